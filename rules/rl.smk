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
