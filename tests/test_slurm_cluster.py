"""The local SLURM harness: a GPU job runs with the resources it asked for, and scancel ends a running job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slurm_cluster import SlurmCluster, local_slurm


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    with local_slurm(tmp_path_factory.mktemp("slurm"), gpus=2) as cluster:
        yield cluster


def test_gpu_job_runs_with_its_resources(slurm: SlurmCluster, tmp_path: Path) -> None:
    out, log = tmp_path / "cuda.txt", tmp_path / "job.log"
    request = ["--gpus=1", "--mem=500", "--time=2", "--cpus-per-task=1", "-A", "ci", "-o", str(log)]
    submitted = slurm.run("sbatch", "--parsable", *request, "--wrap", f"echo $CUDA_VISIBLE_DEVICES > {out}")
    job_id = submitted.stdout.strip()
    assert slurm.wait(job_id) == "COMPLETED", log.read_text()
    assert out.exists()
    details = slurm.job_details(job_id)
    # Without slurmdbd, TRES cannot count gres/gpu (slurmctld refuses AccountingStorageTRES=gres/gpu): the GPU
    # request shows as TresPerJob (TresPerNode for --gres).
    tres = dict(item.split("=", 1) for item in details["TRES"].split(","))
    assert (tres["cpu"], tres["mem"], details["TresPerJob"]) == ("1", "500M", "gres:gpu:1")
    assert (details["Account"], details["Partition"], details["TimeLimit"]) == ("ci", "debug", "00:02:00")
    assert out.read_text().strip() == "0"  # slurmd sets it from the index of the fake device in gres.conf


def test_scancel_ends_a_running_job(slurm: SlurmCluster) -> None:
    job_id = slurm.run("sbatch", "--parsable", "--mem=100", "-o", "/dev/null", "--wrap", "sleep 60").stdout.strip()
    slurm.wait(job_id, {"RUNNING"}, timeout=20)
    assert slurm.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() == "RUNNING"
    slurm.run("scancel", job_id)
    assert slurm.wait(job_id, timeout=20) == "CANCELLED"
