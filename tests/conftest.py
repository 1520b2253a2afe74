"""Shared fixtures: the network is blocked, torch uses one thread, and a tiny base model is built once.

`make test` runs the suite in two pytest-xdist workers (``-n 2 --dist loadgroup``): each test module stays in one
worker, so a module's fixtures (a vLLM engine, a SLURM cluster) are built once, and the config/test.yaml run is built
once for both workers."""

from __future__ import annotations

import copy
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import nextrl  # noqa: F401  (offline / no-telemetry environment)
from nextrl.config import validate_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _no_network_and_one_thread():
    """Any connection to a non-loopback address fails the test: nothing may be downloaded at run time."""
    original = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")
        ):
            raise RuntimeError(f"test tried to reach the network: {address}")
        return original(self, address)

    socket.socket.connect = guarded
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    socket.socket.connect = original


def load_test_config() -> dict[str, Any]:
    return validate_config(yaml.safe_load((REPO / "config" / "test.yaml").read_text()))


@pytest.fixture
def test_config() -> dict[str, Any]:
    return copy.deepcopy(load_test_config())


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Data splits and a warm-started tiny base model for config/test.yaml, built once per session."""
    from nextrl.stages import base_model, data

    config = load_test_config()
    root = tmp_path_factory.mktemp("tiny")
    data.run(config, output=root / "data")
    base_model.run(config, data=root / "data", output=root / "base")
    return {"data": root / "data", "base": root / "base", "root": root}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One xdist group per test module; the two SLURM modules share one, since their clusters use SLURM's default
    ports and cannot run side by side."""
    for item in items:
        module = item.module.__name__ if item.module is not None else item.nodeid
        item.add_marker(pytest.mark.xdist_group("slurm" if module.startswith("tests.test_slurm") else module))


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """config/test.yaml run to the end by Snakemake on the local executor (results/test), once per session: the
    first xdist worker to ask runs it in their shared temporary directory, the other waits for it."""
    from filelock import FileLock

    from tests.workflow_runs import snakemake, workdir

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    directory, finished = shared / "e2e", shared / "e2e.finished"
    with FileLock(shared / "e2e.lock"):
        if not finished.exists():
            shutil.rmtree(directory, ignore_errors=True)  # a worker that failed half-way left it
            directory.mkdir()
            snakemake(workdir(directory), "--cores", "2")
            finished.touch()
    return directory / "results" / "test"
