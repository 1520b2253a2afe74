# The jump between rounds of an extrapolating arm: trajectory → fit → extrapolate → select.


rule trajectory:
    input:
        rl=f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/rl",
    output:
        f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/trajectory.parquet",
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
    conda:
        "../envs/cpu.yaml"
    log:
        log_path("trajectory"),
    benchmark:
        benchmark_path("trajectory")
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=30,
    shell:
        "{params.nextrl} trajectory --config-json {params.config:q} --experiment-dir {params.experiment_dir}"
        " --snapshots {input.rl}/snapshots --output {output}"
        " --arm {wildcards.arm} --seed {wildcards.seed} --round {wildcards.round} > {log} 2>&1"


rule fit:
    input:
        trajectory=f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/trajectory.parquet",
        rl=f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/rl",
    output:
        directory(f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/predictor"),
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
    threads: config["threads"]
    conda:
        "../envs/cpu.yaml"
    log:
        log_path("fit"),
    benchmark:
        benchmark_path("fit")
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    shell:
        "{params.nextrl} fit --config-json {params.config:q} --experiment-dir {params.experiment_dir}"
        " --trajectory {input.trajectory} --evaluations {input.rl}/eval.parquet --output {output}"
        " --arm {wildcards.arm} --seed {wildcards.seed} --round {wildcards.round} > {log} 2>&1"


rule extrapolate:
    input:
        predictor=f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/predictor",
        trajectory=f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/trajectory.parquet",
        rl=f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/rl",
    output:
        directory(f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/jump/candidates"),
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
    conda:
        "../envs/cpu.yaml"
    log:
        log_path("extrapolate"),
    benchmark:
        benchmark_path("extrapolate")
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=30,
    shell:
        "{params.nextrl} extrapolate --config-json {params.config:q} --experiment-dir {params.experiment_dir}"
        " --predictor {input.predictor} --trajectory {input.trajectory} --adapter {input.rl}/state/adapter"
        " --output {output} --arm {wildcards.arm} --seed {wildcards.seed} --round {wildcards.round} > {log} 2>&1"


rule select:
    input:
        data=data_dir(),
        start=start_input,
        candidates=f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/jump/candidates",
    output:
        directory(f"{RESULTS}/{{arm}}/seed{{seed}}/round{{round}}/jump/selected"),
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
        start_model=start_model,
    threads: config["threads"]
    conda:
        "../envs/cpu.yaml"
    log:
        log_path("select"),
    benchmark:
        benchmark_path("select")
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    shell:
        "{params.nextrl} select --config-json {params.config:q} --experiment-dir {params.experiment_dir}"
        " --start-model {params.start_model} --candidates {input.candidates} --data {input.data} --output {output}"
        " --arm {wildcards.arm} --seed {wildcards.seed} --round {wildcards.round} > {log} 2>&1"
