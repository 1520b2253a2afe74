"""Jump and probe overhead per method as a share of a round's RL time, from a finished experiment (times nothing).

Usage: python bench/overhead.py [results/default]

Per arm (one method or variant), mean seconds per jump of each jump stage (trajectory, fit, extrapolate, select) as
Snakemake measured the job (benchmarks/<stage>/, wall time including the job's Python start-up), their sum as a share
of the mean RL chunk job of the same experiment, and the in-process compute per jump (the fit's own seconds plus
candidate selection: the summary's overhead_compute_seconds per seed over the seed's jumps) as a share of the mean RL
chunk's step time. Then the probe's cost per round. Needs the experiment's summary (per_seed.parquet).
"""

import re
import sys
from pathlib import Path

import pandas as pd

from nextrl.analysis.comparison import benchmark_seconds

JUMP_STAGES = ("trajectory", "fit", "extrapolate", "select")
NAME = re.compile(r"^(?P<arm>.+)_seed(?P<seed>\d+)_round(?P<round>\d+)\.tsv$")


def job_seconds(experiment: Path, stage: str) -> pd.DataFrame:
    rows = []
    for path in sorted((experiment / "benchmarks" / stage).glob("*.tsv")):
        match = NAME.match(path.name)
        if match:
            rows.append({**match.groupdict(), "stage": stage, "seconds": benchmark_seconds(str(path))})
    return pd.DataFrame(rows, columns=["arm", "seed", "round", "stage", "seconds"])


def main() -> None:
    experiment = Path(sys.argv[1] if len(sys.argv) > 1 else "results/default")
    rl_jobs = job_seconds(experiment, "rl_chunk")["seconds"].mean()
    rl_compute = pd.Series([pd.read_parquet(path)["seconds"].sum()
                            for path in experiment.glob("*/seed*/round*/rl/metrics.parquet")]).mean()  # fmt: skip
    jobs = pd.concat([job_seconds(experiment, stage) for stage in JUMP_STAGES], ignore_index=True)
    per_jump = jobs.pivot_table(index=["arm", "seed", "round"], columns="stage", values="seconds")
    table = per_jump.groupby("arm")[list(JUMP_STAGES)].mean()
    table["jumps"] = per_jump.groupby("arm").size()
    table["job_total_s"] = table[list(JUMP_STAGES)].sum(axis=1)
    table["job_share_of_rl_chunk_%"] = 100 * table["job_total_s"] / rl_jobs
    per_seed = pd.read_parquet(experiment / "summary" / "per_seed.parquet").set_index("arm")
    table["compute_s"] = per_seed.groupby("arm")["overhead_compute_seconds"].sum() / table["jumps"]
    table["compute_share_of_rl_steps_%"] = 100 * table["compute_s"] / rl_compute
    print(f"{experiment}: mean RL chunk job {rl_jobs:.1f} s, its RL steps {rl_compute:.1f} s\n")
    print(table.reset_index().to_markdown(index=False, floatfmt=".1f"))
    probes = job_seconds(experiment, "probe")
    if len(probes):
        print(f"\nprobe: {len(probes)} jobs, mean {probes['seconds'].mean():.1f} s = "
              f"{100 * probes['seconds'].mean() / rl_jobs:.0f} % of an RL chunk job")  # fmt: skip


if __name__ == "__main__":
    main()
