"""MLflow tracking: every stage job's parameters, metrics and key artifacts, logged to a local sqlite store.

The store is ``results/<experiment>/mlflow.db`` (no server; telemetry off, see :mod:`nextrl`), artifacts go to
``results/<experiment>/mlartifacts``. One MLflow experiment per nextrl experiment; each stage job is one run named
``<arm>/seed<S>/round<r>/<stage>`` and tagged with arm, seed, round and stage, so ``mlflow ui --backend-store-uri
sqlite:///results/<experiment>/mlflow.db`` shows seeds and chunks side by side (group or filter by tag).

A job does not import MLflow (≈2.5 s of imports and sqlite store set-up per job, half of a light job's wall time):
it queues its record as JSON under ``results/<experiment>/tracking/`` (:func:`queue_record`), and the Snakemake
process logs the queue once when the workflow ends, successful or not (``onsuccess`` / ``onerror`` in
rules/common.smk; by hand: ``python -m nextrl.jobs.tracking results/<experiment>``), removing each record it logged.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.jobs.artifacts import atomic_path


@dataclass
class StageRecord:
    """What a stage reports: scalar metrics, parameters, per-step metrics (a ``step`` column) and artifacts to copy."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    step_metrics: pd.DataFrame | None = None
    artifacts: list[Path] = field(default_factory=list)


def tracking_uri(experiment_dir: Path) -> str:
    # The sqlite timeout lets parallel jobs wait for each other's short write bursts instead of failing.
    return f"sqlite:///{(experiment_dir / 'mlflow.db').resolve()}?timeout=60"


def queue_record(
    experiment_dir: Path, stage: str, tags: Mapping[str, Any], record: StageRecord, started: float
) -> Path:
    """Queue one finished stage job's record for :func:`log_queued`, with the job's start (``started``, epoch seconds)
    and end, which become the MLflow run's times; written atomically; returns its path."""
    finished = time.time()
    content = {
        "stage": stage,
        "tags": dict(tags),
        "start_ms": int(started * 1000),
        "end_ms": int(finished * 1000),
        "metrics": {key: float(value) for key, value in record.metrics.items()},
        "params": record.params,
        "step_metrics": None
        if record.step_metrics is None
        else json.loads(record.step_metrics.to_json(orient="records")),
        "artifacts": [str(path.resolve()) for path in record.artifacts],
    }
    path = experiment_dir / "tracking" / f"{time.time_ns()}-{os.getpid()}-{stage}.json"
    with atomic_path(path) as staging:
        staging.write_text(json.dumps(content, default=str))
    return path


def log_queued(experiment_dir: Path) -> int:
    """Log every queued record (oldest first) as one MLflow run each, removing it once logged; returns how many."""
    queue = experiment_dir / "tracking"
    if not any(queue.glob("*.json")):
        return 0  # nothing to log: no MLflow import (`snakemake figures` after a finished run)
    import mlflow

    # The first client creates the sqlite schema (alembic migrations), which two processes must not do at once;
    # the lock also keeps two Snakemake runs of one experiment from logging a record twice.
    with (experiment_dir / ".mlflow.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        queued = sorted(queue.glob("*.json"))
        client = mlflow.MlflowClient(tracking_uri=tracking_uri(experiment_dir))
        found = client.get_experiment_by_name(experiment_dir.name)
        if found is None:
            artifacts = (experiment_dir / "mlartifacts").resolve().as_uri()
            experiment_id = client.create_experiment(experiment_dir.name, artifact_location=artifacts)
        else:
            experiment_id = found.experiment_id
        for path in queued:
            _log_run(client, experiment_id, json.loads(path.read_text()))
            path.unlink()
    return len(queued)


def _log_run(client: Any, experiment_id: str, queued: Mapping[str, Any]) -> None:
    from mlflow.entities import Metric, Param

    stage, tags = queued["stage"], queued["tags"]
    run_tags = {key: str(value) for key, value in tags.items()} | {"stage": stage}
    run_name = "/".join(f"{key}{value}" if key in ("seed", "round") else str(value) for key, value in tags.items())
    run = client.create_run(experiment_id, start_time=queued["start_ms"], run_name=f"{run_name}/{stage}", tags=run_tags)
    now = queued["end_ms"]
    logged_metrics = [Metric(key, float(value), now, 0) for key, value in queued["metrics"].items()]
    for row in queued["step_metrics"] or []:
        step = int(row.pop("step"))
        logged_metrics += [
            Metric(key, float(value), now, step) for key, value in row.items() if isinstance(value, (int, float))
        ]
    logged_params = [Param(key, str(value)[:6000]) for key, value in _flatten(queued["params"]).items()]
    for start in range(0, len(logged_params), 100):  # MLflow's per-batch limits: 100 params, 1000 metrics
        client.log_batch(run.info.run_id, params=logged_params[start : start + 100])
    for start in range(0, len(logged_metrics), 1000):
        client.log_batch(run.info.run_id, metrics=logged_metrics[start : start + 1000])
    for artifact in map(Path, queued["artifacts"]):
        if artifact.is_dir():
            client.log_artifacts(run.info.run_id, str(artifact), artifact_path=artifact.name)
        elif artifact.exists():
            client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id, end_time=now)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


if __name__ == "__main__":
    print(f"logged {log_queued(Path(sys.argv[1]))} queued stage records to MLflow")
