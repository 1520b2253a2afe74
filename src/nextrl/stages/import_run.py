"""The import_run stage: a run trained elsewhere as round 0's RL output, so the jump rules run on it unchanged.

Finds the run's LoRA snapshots in any known layout (:mod:`nextrl.lowrank.foreign_run`), checks them against each other
and the base model's weight shapes, and writes what an RL chunk writes (:mod:`nextrl.rl.chunk_layout`) except the
training state: the run's adapters as snapshots (t = its global step), the last one as the final adapter (the W_T the
candidates extend), its per-step validation accuracy (``import.accuracy``, or no rows) as evaluations, and no metrics
rows (the run's own training metrics stay in its framework).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.lowrank.adapters import load_adapter
from nextrl.lowrank.foreign_run import check_base_shapes, copy_snapshots, find_snapshots, read_accuracy
from nextrl.lowrank.trajectory_table import check_compatible
from nextrl.rl.chunk_layout import EVAL_COLUMNS, METRIC_COLUMNS, ChunkLayout


def run(
    config: Mapping[str, Any], *, run_dir: Path, base_model: Path, accuracy: Path | None, output: Path
) -> StageRecord:
    layout, snapshots = find_snapshots(run_dir)
    adapters = {step: load_adapter(path) for step, path in snapshots.items()}
    first, last = min(adapters), max(adapters)
    for step, adapter in adapters.items():
        check_compatible(adapters[first], adapter, f"import.run_dir: snapshot of step {step} ({snapshots[step]})")
    check_base_shapes(base_model, adapters[first])
    evaluations = read_accuracy(accuracy) if accuracy is not None else pd.DataFrame(columns=list(EVAL_COLUMNS))
    with atomic_path(output) as staging:
        chunk = ChunkLayout(staging)
        copy_snapshots(snapshots, chunk.snapshots)
        shutil.copytree(chunk.snapshot(last), chunk.adapter)
        evaluations.to_parquet(chunk.evaluations, index=False)
        pd.DataFrame(columns=list(METRIC_COLUMNS)).to_parquet(chunk.metrics, index=False)
    return StageRecord(
        params={"layout": layout, "run_dir": str(run_dir), "base_model": str(base_model)},
        metrics={"snapshots": float(len(snapshots)), "first_step": float(first), "last_step": float(last)},
    )
