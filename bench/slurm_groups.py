"""Benchmark: one sbatch job per stage vs the SLURM profile's group `jump` (trajectory → fit → extrapolate in one job),
on a real one-node SLURM (tests/slurm_cluster.py: slurmctld + slurmd from the Debian packages, run as root).

For each variant, config/test.yaml runs from scratch through the README's SLURM command in its own directory; the
script prints the workflow's wall time, the number of sbatch jobs and the summed job wall time (SLURM's own
start/end times). Not a test: it times, it asserts nothing. Run as root from the repository root with
``.venv/bin/python bench/slurm_groups.py [--out bench/out]``; it writes ``<out>/slurm_groups.csv``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.slurm_cluster import local_slurm  # noqa: E402  (the test harness is the one way to start a cluster)

PROFILE = REPO / "workflow" / "profiles" / "slurm"
SITE = ["--default-resources", "slurm_account=bench", "slurm_partition=debug"]


def profile_variant(directory: Path, grouped: bool) -> Path:
    """The SLURM profile as shipped, or without its `groups:` (one job per stage)."""
    settings = yaml.safe_load((PROFILE / "config.yaml").read_text())
    if not grouped:
        settings.pop("groups")
    profile = directory / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(settings))
    return profile


def job_seconds(job: dict[str, str]) -> float:
    start, end = (datetime.fromisoformat(job[key]) for key in ("StartTime", "EndTime"))
    return (end - start).total_seconds()


def run_variant(cluster, grouped: bool) -> dict[str, object]:
    directory = Path(tempfile.mkdtemp(prefix="slurm-groups-"))
    shutil.copytree(REPO / "config", directory / "config")
    profile = profile_variant(directory, grouped)
    before = {job["JobId"] for job in cluster.jobs()}
    snakefile = str(REPO / "workflow" / "Snakefile")
    command = [sys.executable, "-m", "snakemake", "-s", snakefile, "--directory", str(directory),
               "--workflow-profile", str(profile), "--configfile", "config/test.yaml", *SITE]  # fmt: skip
    started = time.monotonic()
    log = directory / "snakemake.log"
    seen: dict[str, dict[str, str]] = {}
    with log.open("w") as output:
        process = subprocess.Popen(command, env=cluster.env, stdout=output, stderr=subprocess.STDOUT, cwd=directory)
        while process.poll() is None:  # slurmctld forgets a job MinJobAge (300 s) after it ends: collect as they go
            seen |= {job["JobId"]: job for job in cluster.jobs()}
            time.sleep(2)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(log.read_text()[-6000:])
    seen |= {job["JobId"]: job for job in cluster.jobs()}
    jobs = [job for job in seen.values() if job["JobId"] not in before]
    shutil.rmtree(directory)
    return {"groups": "jump" if grouped else "none", "wall_s": round(wall, 1), "sbatch_jobs": len(jobs),
            "job_seconds_sum": round(sum(job_seconds(job) for job in jobs), 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="slurm-"))
    with local_slurm(state) as cluster:
        rows = [run_variant(cluster, grouped) for grouped in (False, True)]
    shutil.rmtree(state, ignore_errors=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "slurm_groups.csv", index=False)
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
