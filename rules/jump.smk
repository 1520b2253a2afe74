# The jump between rounds of an extrapolating arm: trajectory → fit → extrapolate → select, and the held-out check.


rule trajectory:
    input:
        rl=f"{ROUND}/rl",
        previous=previous_rl,
        start=start_dir,
    output:
        f"{ROUND}/trajectory.parquet",
    params:
        **STAGE,
        start_adapter=start_adapter,
        offset=start_offset,
        dense=dense_trajectory_options,
    threads: cpus("weights")
    resources:
        **job_resources("weights"),
    log:
        log_path("trajectory"),
    benchmark:
        benchmark_path("trajectory")
    conda:
        "../envs/cpu.yaml"
    shell:
        call(
            "trajectory",
            "--snapshots {input.rl}/snapshots --start-adapter={params.start_adapter} --offset={params.offset}",
            "{params.dense} --output {output}",
        )


rule fit:
    input:
        trajectory=f"{ROUND}/trajectory.parquet",
        rl=f"{ROUND}/rl",
    output:
        directory(f"{ROUND}/predictor"),
    params:
        **STAGE,
        method=lambda w: arm_method(config, w.arm),
    threads: cpus("fit")
    resources:
        **job_resources("fit"),
    log:
        log_path("fit"),
    benchmark:
        benchmark_path("fit")
    conda:
        "../envs/cpu.yaml"
    shell:
        call("fit", "--method {params.method} --trajectory {input.trajectory} --evaluations {input.rl}/eval.parquet --output {output}")


rule extrapolate:
    input:
        predictor=f"{ROUND}/predictor",
        trajectory=f"{ROUND}/trajectory.parquet",
        rl=f"{ROUND}/rl",
    output:
        directory(f"{ROUND}/jump/candidates"),
    params:
        **STAGE,
        adapter=final_adapter,
    threads: cpus("weights")
    resources:
        **job_resources("weights"),
    log:
        log_path("extrapolate"),
    benchmark:
        benchmark_path("extrapolate")
    conda:
        "../envs/cpu.yaml"
    shell:
        call(
            "extrapolate",
            "--predictor {input.predictor} --trajectory {input.trajectory} --adapter={params.adapter}",
            "--output {output}",
        )


rule select:
    input:
        data=DATA,
        start=start_dir,
        rl=f"{ROUND}/rl",
        candidates=f"{ROUND}/jump/candidates",
    output:
        directory(f"{ROUND}/jump/selected"),
    params:
        **STAGE,
        model=final_model,
        start_offset=start_offset,
        adapter=final_adapter,
    threads: cpus("evaluate")
    resources:
        **job_resources("evaluate"),
    log:
        log_path("select"),
    benchmark:
        benchmark_path("select")
    conda:
        "../envs/cpu.yaml"
    shell:
        call(
            "select",
            "--start-model {params.model} --start-offset={params.start_offset} --adapter={params.adapter}",
            "--candidates {input.candidates} --data {input.data} --output {output}",
        )


rule heldout:
    input:
        rl=f"{ROUND}/rl",
        previous=previous_rl,
        start=start_dir,
    output:
        f"{ROUND}/heldout.parquet",
    params:
        **STAGE,
        start_adapter=start_adapter,
        offset=start_offset,
        dense=dense_trajectory_options,
    threads: cpus("weights")
    resources:
        **job_resources("weights"),
    log:
        log_path("heldout"),
    benchmark:
        benchmark_path("heldout")
    conda:
        "../envs/cpu.yaml"
    shell:
        call(
            "heldout",
            "--snapshots {input.rl}/snapshots --start-adapter={params.start_adapter} --offset={params.offset}",
            "--evaluations {input.rl}/eval.parquet {params.dense} --output {output}",
        )
