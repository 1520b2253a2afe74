"""MLflow tracking: every stage logs its parameters, metrics and key artifacts to a local sqlite store.

The store is ``results/<experiment>/mlflow.db`` (no server; telemetry off, see :mod:`nextrl`), artifacts go to
``results/<experiment>/mlartifacts``. One MLflow experiment per nextrl experiment; each stage job is one run named
``<arm>/seed<S>/round<r>/<stage>`` and tagged with arm, seed, round and stage, so ``mlflow ui --backend-store-uri
sqlite:///results/<experiment>/mlflow.db`` shows seeds and chunks side by side (group or filter by tag).
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


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


def log_stage(experiment_dir: Path, stage: str, tags: Mapping[str, Any], record: StageRecord) -> None:
    """Log one stage run as an MLflow run named by its tags."""
    import mlflow
    from mlflow.entities import Metric, Param

    name = experiment_dir.name
    # The first client creates the sqlite schema (alembic migrations), which two jobs must not do at once.
    experiment_dir.mkdir(parents=True, exist_ok=True)
    with (experiment_dir / ".mlflow.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = mlflow.MlflowClient(tracking_uri=tracking_uri(experiment_dir))
        found = client.get_experiment_by_name(name)
        if found is None:
            artifacts = (experiment_dir / "mlartifacts").resolve().as_uri()
            experiment_id = client.create_experiment(name, artifact_location=artifacts)
        else:
            experiment_id = found.experiment_id
    run_tags = {key: str(value) for key, value in tags.items()} | {"stage": stage}
    run_name = "/".join(f"{key}{value}" if key in ("seed", "round") else str(value) for key, value in tags.items())
    run = client.create_run(experiment_id, run_name=f"{run_name}/{stage}", tags=run_tags)
    now = int(time.time() * 1000)
    logged_metrics = [Metric(key, float(value), now, 0) for key, value in record.metrics.items()]
    if record.step_metrics is not None:
        for row in record.step_metrics.to_dict("records"):
            step = int(row.pop("step"))
            logged_metrics += [
                Metric(key, float(value), now, step) for key, value in row.items() if isinstance(value, (int, float))
            ]
    logged_params = [Param(key, str(value)[:6000]) for key, value in _flatten(record.params).items()]
    for start in range(0, len(logged_params), 100):  # MLflow's per-batch limits: 100 params, 1000 metrics
        client.log_batch(run.info.run_id, params=logged_params[start : start + 100])
    for start in range(0, len(logged_metrics), 1000):
        client.log_batch(run.info.run_id, metrics=logged_metrics[start : start + 1000])
    for path in record.artifacts:
        if path.is_dir():
            client.log_artifacts(run.info.run_id, str(path), artifact_path=path.name)
        elif path.exists():
            client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
