"""One module per Snakemake rule. Each ``run(config, ...paths...) -> StageRecord`` reads its input artifacts, writes
its output atomically (complete or absent) and returns what the CLI logs to MLflow; stages share files, never
internals. The results paths are owned by rules/common.smk (the RL chunk's inner layout by nextrl.rl.chunk_layout);
stages receive every path."""
