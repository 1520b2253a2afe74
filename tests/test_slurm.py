"""The SLURM profile on a real one-node SLURM (tests/slurm_cluster.py, fake GPUs): plain RL and NExt of
config/test.yaml run with the README's command, every non-local job through sbatch with the resources the config
states, an RL chunk cancelled mid-way and retried with nothing partial left, and outputs equal to the local run's."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm_cluster import SlurmCluster, local_slurm
from tests.workflow_runs import ENV, REPO, SNAKEMAKE, assert_same_outputs, job_counts, workdir

# README "Running on SLURM"; the only flag beyond the profile names the site's account and partition.
README_COMMAND = ["--workflow-profile", str(REPO / "workflow" / "profiles" / "slurm"),
                  "--default-resources", "slurm_account=ci", "slurm_partition=debug"]  # fmt: skip
# config/test.yaml's resources per kind, plus a GPU for every job that runs the model (slurmd hands out fake ones)
KIND_OF_RULE = {"data": "data", "base_model": "train", "rl_chunk": "train", "select": "evaluate", "probe": "evaluate",
                "evaluate_test": "evaluate", "evaluate_base": "evaluate", "trajectory": "weights", "fit": "fit",
                "extrapolate": "weights", "heldout": "weights"}  # fmt: skip
EXPECTED = {
    "data": {"MinMemoryNode": "500M", "TimeLimit": "00:05:00", "gpus": None},
    "train": {"MinMemoryNode": "1500M", "TimeLimit": "00:20:00", "gpus": "gres:gpu:1"},
    "evaluate": {"MinMemoryNode": "1200M", "TimeLimit": "00:15:00", "gpus": "gres:gpu:1"},
    "fit": {"MinMemoryNode": "800M", "TimeLimit": "00:10:00", "gpus": None},
    "weights": {"MinMemoryNode": "900M", "TimeLimit": "00:12:00", "gpus": None},
}
GPU_JOBS = "resources: {train: {gpu: 1}, evaluate: {gpu: 1}}\n"
CANCELLED_CHUNK = "rule_rl_chunk_wildcards_none_0_1"  # the plugin's comment: rule, then the wildcards' values
# Plain RL and NExt of config/test.yaml (the other arms' jobs are more of the same kinds): every kind of job, a group
# job (trajectory → fit → extrapolate), the held-out check, and the probes.
TARGETS = ["results/test/base_eval/test.parquet", "results/test/next/seed0/round0/heldout.parquet",
           *(f"results/test/{arm}/seed0/round1/{output}" for arm in ("none", "next") for output in ("test.parquet",
                                                                                                     "probe.parquet")),
           "results/test/none/seed0/round0/probe.parquet"]  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    with local_slurm(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def rules_of(job: dict[str, str]) -> list[str]:
    """The rules a SLURM job ran, from the plugin's comment: rule_<rule>[_wildcards_<…>], or for a group job of the
    profile's group `jump`, rule_jump_<its rules joined by _>."""
    name = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
    return name.removeprefix("jump_").split("_") if name.startswith("jump_") else [name]


def expected_request(rules: list[str]) -> dict[str, str | None]:
    """What sbatch must have asked for the rules' job: their kinds' memory (the largest, for a group job), time
    limits (summed: a group job runs its rules one after the other) and GPUs."""
    kinds = [EXPECTED[KIND_OF_RULE[rule]] for rule in rules]
    minutes = sum(int(kind["TimeLimit"].split(":")[1]) for kind in kinds)
    return {"MinMemoryNode": f"{max(int(kind['MinMemoryNode'][:-1]) for kind in kinds)}M",
            "TimeLimit": f"00:{minutes:02d}:00", "gpus": kinds[0]["gpus"]}  # fmt: skip


def wait_for_no_staging(directory: Path, seconds: float) -> list[str]:
    """The staging directories left in ``directory`` once they are gone or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while any(directory.glob(".rl.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(path.name for path in directory.glob(".rl.*.tmp"))


def run_and_cancel_one_chunk(cluster: SlurmCluster, directory: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Runs the README command on TARGETS, scancels round 1 of `none` once its stage has made its staging directory, and
    collects every job slurmctld saw (polled: a job stays listed MinJobAge = 300 s after it ends)."""
    # the targets first: --configfile and --default-resources take every word after them
    command = [*SNAKEMAKE, *TARGETS, "--directory", str(directory), "--configfile", "config/test.yaml",
               "config/gpus.yaml", *README_COMMAND]  # fmt: skip
    logs = directory / "snakemake.log"
    with logs.open("w") as log:
        process = subprocess.Popen(command, env={**ENV, **cluster.env}, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=directory)  # fmt: skip
        seen: dict[str, dict[str, str]] = {}
        cancelled, left_after_cancel = "", None
        staging = directory / "results" / "test" / "none" / "seed0" / "round1"
        deadline, next_listing = time.monotonic() + 1200, 0.0
        while process.poll() is None and time.monotonic() < deadline:
            if time.monotonic() >= next_listing:
                seen |= {job["JobId"]: job for job in cluster.jobs()}
                next_listing = time.monotonic() + 1
            if not cancelled and any(staging.glob(".rl.*.tmp")):
                chunk = [
                    job for job in cluster.jobs() if job["Comment"] == CANCELLED_CHUNK and job["JobState"] == "RUNNING"
                ]
                if chunk:
                    cancelled = chunk[0]["JobId"]
                    cluster.run("scancel", cancelled)
                    cluster.wait(cancelled)
                    left_after_cancel = wait_for_no_staging(staging, seconds=5)  # the retry starts > 10 s later
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
    seen |= {job["JobId"]: job for job in cluster.jobs()}
    result = subprocess.CompletedProcess(command, process.returncode, logs.read_text(), "")
    return result, {"jobs": seen, "cancelled": cancelled, "left_after_cancel": left_after_cancel}


def test_the_readme_command_runs_the_test_config_through_sbatch(
    cluster: SlurmCluster, finished_run: Path, tmp_path: Path
):
    directory = workdir(tmp_path)
    (directory / "config" / "gpus.yaml").write_text(GPU_JOBS)
    started = time.monotonic()
    result, observed = run_and_cancel_one_chunk(cluster, directory)
    print(f"SLURM run: {time.monotonic() - started:.0f} s")
    assert result.returncode == 0, result.stdout[-6000:]
    jobs = observed["jobs"]
    # every job that is not a local rule went through sbatch, each with its kind's resources and the site's flags
    plan = snakemake_plan(directory)
    local = {"share_first_round"}
    assert sorted(
        rule for job in jobs.values() for rule in rules_of(job) if job["JobId"] != observed["cancelled"]
    ) == sorted(rule for rule, count in plan.items() if rule not in local for _ in range(count))
    for job in jobs.values():
        asked = expected_request(rules_of(job))
        print(job["Comment"], job["JobState"], job["MinMemoryNode"], job["TimeLimit"], job.get("TresPerJob"))
        assert job["MinMemoryNode"] == asked["MinMemoryNode"] and job["TimeLimit"] == asked["TimeLimit"], job
        assert job.get("TresPerJob") == asked["gpus"] and job["NumCPUs"] == "1", job
        assert job["Account"] == "ci" and job["Partition"] == "debug", job
    # the cancelled chunk: CANCELLED in SLURM, its staging directory gone, its SLURM log kept, run again by the retry
    cancelled = observed["cancelled"]
    assert cancelled, "round 1 of `none` never reached step 6 while running"
    assert jobs[cancelled]["JobState"] == "CANCELLED" and observed["left_after_cancel"] == []
    assert (directory / ".snakemake" / "slurm_logs" / "rule_rl_chunk" / "none_0_1" / f"{cancelled}.log").exists()
    retries = [job for job in jobs.values() if job["Comment"] == CANCELLED_CHUNK and job["JobId"] != cancelled]
    assert [job["JobState"] for job in retries] == ["COMPLETED"]
    results = directory / "results" / "test"
    assert all((directory / target).is_file() for target in TARGETS) and not list(results.rglob(".*.tmp"))
    assert_same_outputs(results, finished_run, part=True)


def snakemake_plan(directory: Path) -> dict[str, int]:
    """The rules of config/test.yaml's DAG for TARGETS and their job counts (a dry run's job stats)."""
    command = [*SNAKEMAKE, "--directory", str(directory), "--configfile", "config/test.yaml", "-n", "--forceall",
               *TARGETS]  # fmt: skip
    plan = subprocess.run([*command, "--cores", "2"], capture_output=True, text=True, env=ENV, cwd=directory)
    return job_counts(plan.stdout)
