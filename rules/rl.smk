rule rl_chunk:
    input:
        data=data_dir(),
        start=start_input,
        resume=resume_input,
    output:
        directory(f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/rl"),
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
        start_model=start_model,
        resume=resume_state,
    threads: config["threads"]
    conda:
        "../envs/cpu.yaml"
    log:
        log_path("rl_chunk"),
    benchmark:
        benchmark_path("rl_chunk")
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=120,
    shell:
        "{params.nextrl} rl-chunk --config-json {params.config:q} --experiment-dir {params.experiment_dir}"
        " --start-model {params.start_model} --resume={params.resume} --data {input.data} --output {output}"
        " --arm {wildcards.arm} --seed {wildcards.seed} --round {wildcards.round} > {log} 2>&1"


if "none" in config["arms"] and JUMP_ARMS:

    # Round 0 depends only on (seed, base model), never on the arm: jump arms reuse the plain-RL chunk.
    ruleorder: share_first_round > rl_chunk

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
        benchmark:
            f"{RESULTS}/benchmarks/share_first_round/{{arm}}_seed{{seed}}.tsv"
        conda:
            "../envs/cpu.yaml"
        resources:
            gpu=0,
            mem_mb=500,
            runtime=5,
        shell:
            "rm -rf {params.staging} && cp -r {input} {params.staging} && mv {params.staging} {output} 2> {log}"
