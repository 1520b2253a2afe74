# The summary: every artifact the comparison reads, listed per (arm, seed, round) in a manifest file (a file, so the
# summary's command line stays short whatever the experiment's size), then the tables (nextrl.stages.summary).
localrules:
    summary_manifest,
    summary,


MANIFEST = (
    {"imported": True, "runs": [imported_round_artifacts(arm, seed) for arm in config["arms"] for seed in config["seeds"]]}
    if IMPORTING
    else {
        "base_test": BASE_TEST,
        "plain_arms": PLAIN_ARMS,
        "methods": {arm: arm_method(config, arm) for arm in config["arms"]},
        "training": {arm: training_mode(config, arm) for arm in config["arms"]},
        "runs": [
            round_artifacts(arm, seed, r) for arm in config["arms"] for seed in config["seeds"] for r in range(config["rounds"])
        ],
    }
)
# The outputs (files or directories) that hold the manifest's files.
SUMMARY_INPUTS = [*([] if IMPORTING else [BASE_TEST]), *(path for run in MANIFEST["runs"] for path in run_outputs(run))]


rule summary_manifest:
    output:
        f"{RESULTS}/summary_manifest.json",
    params:
        manifest=MANIFEST,
    log:
        f"{RESULTS}/logs/summary_manifest.log",
    run:
        write_json(params.manifest, Path(output[0]))


rule summary:
    input:
        SUMMARY_INPUTS,
        manifest=rules.summary_manifest.output[0],
    output:
        directory(SUMMARY),
    params:
        **STAGE,
    log:
        f"{RESULTS}/logs/summary.log",
    benchmark:
        f"{RESULTS}/benchmarks/summary.tsv"
    conda:
        "../envs/cpu.yaml"
    shell:
        call("summary", "--manifest {input.manifest} --output {output}", per_run=False)
