# The extrapolability probe: accuracy along a round's own ray W_start + k·(W_T − W_start).


# The rounds that get a probe (config `probe`): every LoRA round of a plain arm, and a jump arm's rounds after the first
# (its round 0 is `none`'s chunk, probed there), the last round only with `every_round`; full-parameter rounds have no
# LoRA factors to ray. An imported run is probed once, in its first arm, when it is evaluated (`import.evaluate`).
PROBED_ROUNDS = {"every_round": config["rounds"], "all_but_last": LAST_ROUND, "off": 0}[config["probe"]]
PROBED = {
    (arm, r)
    for arm in config["arms"]
    for r in range(config["rounds"])
    if (
        config["import"]["evaluate"] and arm == JUMP_ARMS[0]
        if IMPORTING
        else r < PROBED_ROUNDS and (r > 0 or not jumps(arm)) and not full_mode(arm)
    )
}


rule probe:
    input:
        data=DATA,
        start=get_start_dir,
        rl=f"{ROUND}/rl",
        previous=get_previous_rl,
    output:
        f"{ROUND}/probe.parquet",
    params:
        **STAGE,
        start_model=get_start_model,
        start_adapter=get_start_adapter,
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
            f"--start-model {{params.start_model}} --adapter {RL_INPUT.adapter}",
            "--start-adapter={params.start_adapter} --data {input.data} --output {output}",
        )
