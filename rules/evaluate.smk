rule evaluate_test:
    input:
        data=DATA,
        start=get_start_dir,
        rl=f"{ROUND}/rl",
    output:
        f"{ROUND}/test.parquet",
    params:
        **STAGE,
        model=get_final_model,
        adapter=get_final_adapter,
    threads: cpus("evaluate")
    resources:
        **job_resources("evaluate"),
    log:
        log_path("evaluate_test"),
    benchmark:
        benchmark_path("evaluate_test")
    conda:
        "../envs/cpu.yaml"
    shell:
        call(
            "evaluate",
            "--start-model {params.model} --adapter={params.adapter} --data {input.data} --split test",
            "--output {output}",
        )


rule evaluate_base:
    input:
        data=DATA,
        base=BASE,
    output:
        BASE_TEST,
    params:
        **STAGE,
    threads: cpus("evaluate")
    resources:
        **job_resources("evaluate"),
    log:
        f"{RESULTS}/logs/evaluate_base.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_base.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        call(
            "evaluate",
            "--start-model {input.base} --data {input.data} --split test --output {output} --arm base",
            per_run=False,
        )
