rule summary:
    input:
        summary_inputs,
    output:
        directory(summary_dir()),
    params:
        config=json.dumps(config),
        experiment_dir=experiment_dir,
        nextrl=NEXTRL,
    conda:
        "../envs/cpu.yaml"
    log:
        f"{RESULTS}/logs/summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/summary.tsv"
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    shell:
        "{params.nextrl} summary --config-json {params.config:q} --experiment-dir {params.experiment_dir} --output {output} > {log} 2>&1"
