rule probe:
    input:
        data=DATA,
        start=start_dir,
        rl=f"{ROUND}/rl",
        previous=previous_rl,
    output:
        f"{ROUND}/probe.parquet",
    params:
        **STAGE,
        start_model=start_model,
        start_adapter=start_adapter,
    threads: cpus("evaluate")
    resources:
        **job_resources("evaluate"),
    log:
        log_path("probe"),
    benchmark:
        benchmark_path("probe")
    conda:
        "../envs/cpu.yaml"
    shell:
        call(
            "probe",
            "--start-model {params.start_model} --adapter {input.rl}/state/adapter",
            "--start-adapter={params.start_adapter} --data {input.data} --output {output}",
        )
