"""One module per Snakemake rule. Each ``run(config, ...paths...) -> StageRecord`` reads its input artifacts, writes
its output atomically (complete or absent) and returns what the CLI logs to MLflow; stages share files, never
internals. The results layout (which path is which) is owned by rules/common.smk; stages receive every path."""
