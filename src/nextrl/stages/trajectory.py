"""The trajectory stage: one round's snapshots → ``trajectory.parquet`` (schema, formulas:
:mod:`nextrl.lowrank.trajectory_table`).

LoRA snapshots need the adapter the round resumed and the start model's low-rank offset; full-parameter snapshots
(``rl.mode: full``) need the experiment's base model and the round's start model instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.lowrank.round_snapshots import load_round


def run(
    config: Mapping[str, Any],
    *,
    snapshots: Path,
    start_adapter: Path | None,
    offset: Path | None,
    output: Path,
    round_index: int,
    base_model: Path | None = None,
    start_weights: Path | None = None,
) -> StageRecord:
    """``start_adapter``: the adapter the round resumed (None for a fresh LoRA); ``offset``: the start model's
    low-rank offset from the experiment's base model (None in round 0). Full mode: ``base_model`` and
    ``start_weights`` (the model directory the round started from)."""
    began = time.perf_counter()
    round_ = load_round(config, round_index, snapshots, start_adapter, offset, base_model, start_weights)
    table = round_.table(round_.snapshots)
    with atomic_path(output) as staging:
        pq.write_table(table, staging)
    return StageRecord(metrics={"rows": float(table.num_rows), "seconds": time.perf_counter() - began})
