rule data:
    output:
        directory(DATA),
    params:
        **STAGE,
    threads: cpus("data")
    resources:
        **job_resources("data"),
    log:
        f"{RESULTS}/logs/data.log",
    benchmark:
        f"{RESULTS}/benchmarks/data.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        call("data", "--output {output}", per_run=False)


# An imported run brings its own base model (rules/import.smk): no rule may write over the user's directory.
if not IMPORTING:
    BASE_MODEL_KIND = "train" if config["model"]["source"] == "tiny" else "data"  # a shipped or local model is copied

    rule base_model:
        input:
            DATA,
        output:
            directory(BASE),
        params:
            **STAGE,
        threads: cpus(BASE_MODEL_KIND)
        resources:
            **job_resources(BASE_MODEL_KIND),
        log:
            f"{RESULTS}/logs/base_model.log",
        benchmark:
            f"{RESULTS}/benchmarks/base_model.tsv"
        conda:
            "../envs/cpu.yaml"
        shell:
            call("base_model", "--data {input} --output {output}", per_run=False)
