# A chat task renders its prompts with the base model's chat template; only the tiny model's warm start reads the
# splits, so the two never depend on each other (a chat task needs a chat model: config check).
CHAT = config["task"]["chat"]
WARM_STARTED = config["model"]["source"] == "tiny"


rule data:
    input:
        tokenizer=BASE if CHAT else [],
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
        call("data", "--tokenizer={input.tokenizer} --output {output}", per_run=False)


# An imported run brings its own base model (rules/import.smk): no rule may write over the user's directory.
if not IMPORTING:
    BASE_MODEL_KIND = "train" if config["model"]["source"] == "tiny" else "data"  # a shipped or local model is copied

    rule base_model:
        input:
            data=DATA if WARM_STARTED else [],
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
            call("base_model", "--data={input.data} --output {output}", per_run=False)
