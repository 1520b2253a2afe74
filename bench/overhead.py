"""NExt overhead as a share of RL wall time, from a finished experiment's artifacts (no timing of its own).

Usage: python bench/overhead.py [results/default]
Job wall time comes from Snakemake's benchmark files (includes each job's Python start-up, ~5–10 s here);
compute time from the artifacts (RL step seconds; predictor fit and candidate-selection seconds).
"""

import sys
from pathlib import Path

import pandas as pd

experiment = Path(sys.argv[1] if len(sys.argv) > 1 else "results/default")
per_seed = pd.read_parquet(experiment / "summary" / "steps_to_target.parquet")
jump_arms = per_seed[per_seed["arm"] != "none"]
columns = ["arm", "seed", "rl_job_seconds", "overhead_seconds", "rl_seconds", "overhead_compute_seconds"]
table = jump_arms[columns].copy()
table["job_share_%"] = 100 * table["overhead_seconds"] / table["rl_job_seconds"]
table["compute_share_%"] = 100 * table["overhead_compute_seconds"] / table["rl_seconds"]
print(table.to_markdown(index=False, floatfmt=".2f"))
totals = jump_arms[columns[2:]].sum()
print(
    "\nall seeds: job-wall overhead "
    f"{100 * totals['overhead_seconds'] / totals['rl_job_seconds']:.1f} % of RL job wall; "
    f"compute overhead {100 * totals['overhead_compute_seconds'] / totals['rl_seconds']:.1f} % of RL step time"
)
