"""The import_run stage: a run trained elsewhere as round 0's RL output, so the jump rules run on it unchanged.

Finds the run's LoRA snapshots in any known layout (:mod:`nextrl.lowrank.foreign_run`), checks them against each other
and
the base model's weight shapes, and writes what an RL chunk writes (rl_chunk's layout) except the training state:

    snapshots/step_<t>/  the run's adapters (t = its global step)
    state/adapter/       the last snapshot (the W_T the candidates extend)
    eval.parquet         the run's per-step validation accuracy (``import.accuracy``), or no rows
    metrics.parquet      no rows (the run's own training metrics stay in its framework)
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
from nextrl.rl.training import STATE_ADAPTER
from nextrl.stages.rl_chunk import EVAL_COLUMNS, METRIC_COLUMNS


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
        copy_snapshots(snapshots, staging / "snapshots")
        shutil.copytree(staging / "snapshots" / f"step_{last}", staging / "state" / STATE_ADAPTER)
        evaluations.to_parquet(staging / "eval.parquet", index=False)
        pd.DataFrame(columns=list(METRIC_COLUMNS)).to_parquet(staging / "metrics.parquet", index=False)
    return StageRecord(
        params={"layout": layout, "run_dir": str(run_dir), "base_model": str(base_model)},
        metrics={"snapshots": float(len(snapshots)), "first_step": float(first), "last_step": float(last)},
    )
