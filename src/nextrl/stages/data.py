"""The data stage: the task's train / selection / validation / test splits (schema: :mod:`nextrl.tasks`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.tasks import build_splits, write_splits


def run(config: Mapping[str, Any], *, output: Path) -> StageRecord:
    """Write ``<split>.parquet`` for every split; metrics: item counts and the worst-case standard error 0.5/√n."""
    splits = build_splits(config["task"])
    with atomic_path(output) as staging:
        staging.mkdir()
        write_splits(splits, staging)
    metrics = {f"{name}_items": float(len(frame)) for name, frame in splits.items()}
    metrics |= {f"{name}_max_standard_error": 0.5 / len(frame) ** 0.5 for name, frame in splits.items()}
    return StageRecord(metrics=metrics, params={"task": dict(config["task"])})
