rule evaluate_test:
    input:
        data=data_dir(),
        start=start_input,
        rl=f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/rl",
    output:
        f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/test.parquet",
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
        start_model=start_model,
    threads: config["threads"]
    conda:
        "../envs/cpu.yaml"
    log:
        log_path("evaluate_test"),
    benchmark:
        benchmark_path("evaluate_test")
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=30,
    shell:
        "{params.nextrl} evaluate --config-json {params.config:q} --experiment-dir {params.experiment_dir}"
        " --start-model {params.start_model} --adapter {input.rl}/state/adapter --data {input.data} --split test"
        " --output {output} --arm {wildcards.arm} --seed {wildcards.seed} --round {wildcards.round} > {log} 2>&1"


rule evaluate_base:
    input:
        data=data_dir(),
        base=base_dir(),
    output:
        f"{RESULTS}/base_eval/test.parquet",
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
    threads: config["threads"]
    conda:
        "../envs/cpu.yaml"
    log:
        f"{RESULTS}/logs/evaluate_base.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_base.tsv"
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=30,
    shell:
        "{params.nextrl} evaluate --config-json {params.config:q} --experiment-dir {params.experiment_dir}"
        " --start-model {input.base} --adapter= --data {input.data} --split test"
        " --output {output} --arm base --seed 0 --round 0 > {log} 2>&1"
