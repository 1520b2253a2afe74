"""The trajectory stage: one round's snapshots → ``trajectory.parquet`` (schema, formulas: :mod:`nextrl.trajectory`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from nextrl.adapters import load_snapshots
from nextrl.artifacts import atomic_path
from nextrl.tracking import StageRecord
from nextrl.trajectory import round_trajectory


def run(
    config: Mapping[str, Any],
    *,
    snapshots: Path,
    start_adapter: Path | None,
    offset: Path | None,
    output: Path,
    round_index: int,
) -> StageRecord:
    """``start_adapter``: the adapter the round resumed (None for a fresh LoRA); ``offset``: the start model's
    low-rank offset from the experiment's base model (None in round 0)."""
    began = time.perf_counter()
    table = round_trajectory(config, load_snapshots(snapshots), start_adapter, offset, round_index)
    with atomic_path(output) as staging:
        pq.write_table(table, staging)
    return StageRecord(metrics={"rows": float(table.num_rows), "seconds": time.perf_counter() - began})
