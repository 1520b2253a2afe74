# The jump between rounds of an extrapolating arm: trajectory → fit → extrapolate → select, and the held-out check.


# The rounds that get the held-out check (config `heldout`: off, first_round, every_round), never the last; round 0 is
# `none`'s chunk in every jump arm, so it is checked once, in the first jump arm.
HELDOUT_CHECKED = {
    (arm, r)
    for arm in JUMP_ARMS
    for r in range(LAST_ROUND)
    if config["heldout"] != "off" and (arm == JUMP_ARMS[0] if r == 0 else config["heldout"] == "every_round")
}


rule trajectory:
    input:
        rl=f"{ROUND}/rl",
        previous=get_previous_rl,
        start=get_start_dir,
    output:
        f"{ROUND}/trajectory.parquet",
    params:
        **STAGE,
        start_adapter=get_start_adapter,
        offset=get_start_offset,
        dense=get_dense_options,
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
            f"--snapshots {RL_INPUT.snapshots} --start-adapter={{params.start_adapter}} --offset={{params.offset}}",
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
        call(
            "fit",
            f"--method {{params.method}} --trajectory {{input.trajectory}} --evaluations {RL_INPUT.evaluations}",
            "--output {output}",
        )


rule extrapolate:
    input:
        predictor=f"{ROUND}/predictor",
        trajectory=f"{ROUND}/trajectory.parquet",
        rl=f"{ROUND}/rl",
    output:
        directory(f"{ROUND}/jump/candidates"),
    params:
        **STAGE,
        adapter=get_final_adapter,
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
        start=get_start_dir,
        rl=f"{ROUND}/rl",
        candidates=f"{ROUND}/jump/candidates",
    output:
        directory(f"{ROUND}/jump/selected"),
    params:
        **STAGE,
        model=get_final_model,
        start_offset=get_start_offset,
        adapter=get_final_adapter,
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
        previous=get_previous_rl,
        start=get_start_dir,
    output:
        f"{ROUND}/heldout.parquet",
    params:
        **STAGE,
        start_adapter=get_start_adapter,
        offset=get_start_offset,
        dense=get_dense_options,
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
            f"--snapshots {RL_INPUT.snapshots} --start-adapter={{params.start_adapter}} --offset={{params.offset}}",
            f"--evaluations {RL_INPUT.evaluations} {{params.dense}} --output {{output}}",
        )
