"""Shared fixtures: the network is blocked, torch uses one thread, and a tiny base model is built once.

`make test` runs the suite in two pytest-xdist workers (``-n 2 --dist load``), which take tests one by one: a module's
fixtures may be built in both workers, so the two that run a whole experiment (the config/test.yaml run and the
SmolLM2 smoke run) are built once for both (:func:`tests.workflow_runs.built_once`). (xdist's ``loadgroup`` cannot
keep a module in one worker under pytest 9: it marks groups by rewriting ``item._nodeid``, which pytest 9's node ids
no longer read.)"""

from __future__ import annotations

import copy
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


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """config/test.yaml run to the end by Snakemake on the local executor (results/test), once per session."""
    from tests.workflow_runs import built_once, snakemake, workdir

    directory = built_once(
        tmp_path_factory, worker_id, "e2e", lambda folder: snakemake(workdir(folder), "--cores", "2")
    )
    return directory / "results" / "test"
