rule rl_chunk:
    input:
        data=DATA,
        start=get_start_dir,
        previous=get_previous_rl,
    output:
        directory(f"{ROUND}/rl"),
    params:
        **STAGE,
        start_model=get_start_model,
        resume=get_resume,
        jump_selection=get_jump_selection,
    threads: cpus("train")
    resources:
        **job_resources("train"),
    log:
        log_path("rl_chunk"),
    benchmark:
        benchmark_path("rl_chunk")
    conda:
        "../envs/cpu.yaml"
    shell:
        call(
            "rl_chunk",
            "--start-model {params.start_model} --resume={params.resume} --jump-selection={params.jump_selection}",
            "--data {input.data} --output {output}",
        )


if "none" in config["arms"] and JUMP_ARMS:

    # Round 0 depends only on (seed, base model), never on the arm: jump arms reuse the plain-RL chunk.
    ruleorder: share_first_round > rl_chunk

    localrules:
        share_first_round,

    rule share_first_round:
        input:
            f"{RESULTS}/none/seed{{seed}}/round0/rl",
        output:
            directory(f"{RESULTS}/{{arm}}/seed{{seed}}/round0/rl"),
        wildcard_constraints:
            arm="|".join(JUMP_ARMS),
        params:
            staging=lambda w, output: os.path.join(os.path.dirname(output[0]), ".rl.shared.tmp"),
        log:
            f"{RESULTS}/logs/share_first_round/{{arm}}_seed{{seed}}.log",
        conda:
            "../envs/cpu.yaml"
        shell:
            "(rm -rf {params.staging} && cp -r {input} {params.staging} && mv {params.staging} {output}) > {log} 2>&1"
