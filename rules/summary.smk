localrules:
    summary,


rule summary:
    input:
        summary_inputs,
    output:
        directory(SUMMARY),
    params:
        **STAGE,
        manifest=json.dumps(summary_manifest()),
    log:
        f"{RESULTS}/logs/summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/summary.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        call("summary", "--manifest {params.manifest:q} --output {output}", per_run=False)
