"""Running the workflow in a test: a work directory with the repository's configs, `snakemake` on it, a whole run
built once for both xdist workers, a dry run's job counts, and what of its results must be identical between two runs
of one config (one owner for conftest, test_workflow, test_slurm and test_gguf_base)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from nextrl.rl.chunk_layout import TIMING_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile")]
ENV = {**os.environ, "TQDM_DISABLE": "1"}  # the offline environment is nextrl's own (nextrl/__init__.py)


def workdir(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def snakemake(directory: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SNAKEMAKE, "--directory", str(directory), "--configfile", "config/test.yaml", *args],
                            capture_output=True, text=True, env=ENV, timeout=900, cwd=directory)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(result.stdout[-4000:] + result.stderr[-4000:])
    return result


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Each rule's job count in a dry run's "Job stats" table (without the total)."""
    table = dry_run_output[dry_run_output.index("Job stats:") :].split("\n\n")[0].splitlines()[3:]
    return {line.split()[0]: int(line.split()[1]) for line in table if line.split()[0] != "total"}


def built_once(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str, build: Callable[[Path], None]
) -> Path:
    """``build(directory)`` once per test session, whichever xdist worker asks first (the others wait on a file
    lock), in the workers' shared temporary directory; a build that failed half-way is started again."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    directory, finished = shared / name, shared / f"{name}.finished"
    with FileLock(shared / f"{name}.lock"):
        if not finished.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            build(directory)
            finished.touch()
    return directory


def run_outputs(results: Path) -> dict[str, object]:
    """What must be identical between an interrupted-and-resumed run and an uninterrupted one."""
    found: dict[str, object] = {}
    for path in sorted(results.rglob("*")):
        relative = str(path.relative_to(results))
        if relative.startswith("mlartifacts"):  # tracking copies, keyed by run id
            continue
        if path.name == "adapter_model.safetensors":
            found[relative] = load_file(path)
        elif path.name in ("metrics.parquet",):
            found[relative] = pd.read_parquet(path).drop(columns=list(TIMING_COLUMNS))
        elif path.name in ("eval.parquet", "test.parquet", "trajectory.parquet", "candidates.parquet"):
            found[relative] = pd.read_parquet(path)
    return found


def assert_same_outputs(run: Path, reference: Path, *, part: bool = False) -> None:
    """The two runs' results (run_outputs) are equal: tables exactly, adapters bit for bit. With ``part``, ``run``
    made only some of the reference's outputs (Snakemake asked for some targets): those are equal."""
    found, expected = run_outputs(run), run_outputs(reference)
    if part:
        assert found and found.keys() <= expected.keys(), sorted(found.keys() - expected.keys())
        expected = {key: expected[key] for key in found}
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(found[key], value, obj=key)
        else:
            assert value.keys() == found[key].keys()
            assert all(torch.equal(value[name], found[key][name]) for name in value), key
