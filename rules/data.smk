rule data:
    output:
        directory(data_dir()),
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
    conda:
        "../envs/cpu.yaml"
    log:
        f"{RESULTS}/logs/data.log",
    benchmark:
        f"{RESULTS}/benchmarks/data.tsv"
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.nextrl} data --config-json {params.config:q} --experiment-dir {params.experiment_dir} --output {output} > {log} 2>&1"


rule base_model:
    input:
        data_dir(),
    output:
        directory(base_dir()),
    params:
        config=STAGE_CONFIG,
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
    threads: config["threads"]
    conda:
        "../envs/cpu.yaml"
    log:
        f"{RESULTS}/logs/base_model.log",
    benchmark:
        f"{RESULTS}/benchmarks/base_model.tsv"
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=60,
    shell:
        "{params.nextrl} base-model --config-json {params.config:q} --experiment-dir {params.experiment_dir}"
        " --data {input} --output {output} > {log} 2>&1"
