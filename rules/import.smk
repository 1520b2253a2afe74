# A run trained elsewhere (config `import`): its snapshots become round 0's RL output, so trajectory, fit,
# extrapolate (and with import.evaluate: probe and select) run on it unchanged; merge writes HF model directories.


# What an imported run yields beyond the summary and figures: every arm's candidates (and merged models).
IMPORTED_TARGETS = [
    f"{round_dir(arm, seed, 0)}/{output}"
    for arm in config["arms"]
    for seed in config["seeds"]
    for output in ["jump/candidates", *(["jump/merged"] if config["import"]["merge"] else [])]
] if IMPORTING else []


if IMPORTING:

    ruleorder: import_run > rl_chunk

    localrules:
        import_run,

    rule import_run:
        output:
            directory(f"{ROUND}/rl"),
        wildcard_constraints:
            round="0",
        params:
            **STAGE,
            run_dir=os.path.abspath(config["import"]["run_dir"]),
            accuracy=os.path.abspath(config["import"]["accuracy"]) if "accuracy" in config["import"] else "",
        log:
            log_path("import_run"),
        conda:
            "../envs/cpu.yaml"
        shell:
            call(
                "import_run",
                f"--run-dir {{params.run_dir:q}} --base-model {BASE} --accuracy={{params.accuracy:q}}",
                "--output {output}",
            )

    rule merge:
        input:
            f"{ROUND}/jump/candidates",
        output:
            directory(f"{ROUND}/jump/merged"),
        params:
            **STAGE,
        threads: cpus("weights")
        resources:
            **job_resources("weights"),
        log:
            log_path("merge"),
        conda:
            "../envs/cpu.yaml"
        shell:
            call("merge", f"--base-model {BASE} --candidates {{input}} --output {{output}}")
