rule data:
    output:
        directory(DATA),
    params:
        **STAGE,
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

    rule base_model:
        input:
            DATA,
        output:
            directory(BASE),
        params:
            **STAGE,
        threads: config["threads"]
        log:
            f"{RESULTS}/logs/base_model.log",
        benchmark:
            f"{RESULTS}/benchmarks/base_model.tsv"
        resources:
            runtime=60,
            gpu=GPU_JOB if config["model"]["source"] == "tiny" else 0,  # a local model is only copied
        conda:
            "../envs/cpu.yaml"
        shell:
            call("base_model", "--data {input} --output {output}", per_run=False)
