"""The heldout stage: every registered extrapolator, fitted on the early part of one round, predicts its last target.

The trajectory as if the round had ended at t* = T − H is rebuilt from the snapshots up to t* (same formulas,
:func:`nextrl.trajectory.trajectory_table`); each method of :data:`nextrl.extrapolators.REGISTRY` is fitted on it with
the experiment's options (evaluations up to t* for accuracy-driven methods) and predicts W_T − W_{t*}, which
:func:`nextrl.heldout.compare` scores against the exact truth. ``repeat_last`` is the trivial baseline; predicting
zero scores relative error 1; a method that cannot fit the round (ExtrapolatorError) gets one row saying why.
Output ``heldout.parquet``: HELDOUT_COLUMNS, one row per (method, module); empty when the round is too short
(it needs a target pair before t*, i.e. at least 2H of snapshots).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from nextrl.adapters import load_snapshots
from nextrl.artifacts import write_parquet
from nextrl.extrapolators import REGISTRY
from nextrl.extrapolators.base import ExtrapolatorError
from nextrl.heldout import HELDOUT_COLUMNS, compare
from nextrl.seeding import stage_seed
from nextrl.tracking import StageRecord
from nextrl.trajectory import (
    TrajectoryError,
    dense_round_trajectory,
    difference,
    load_dense_round,
    round_trajectory,
)  # fmt: skip


def run(
    config: Mapping[str, Any],
    *,
    snapshots: Path,
    start_adapter: Path | None,
    offset: Path | None,
    evaluations: Path,
    output: Path,
    seed: int,
    round_index: int,
    base_model: Path | None = None,
    start_weights: Path | None = None,
) -> StageRecord:
    """Full-parameter rounds (``rl.mode: full``) need ``base_model`` and ``start_weights`` as the trajectory stage
    does; their truth is the dense W_T − W_{t*}, as factors (matrix, identity)."""
    if config["rl"]["mode"] == "full":
        if base_model is None or start_weights is None:
            raise TrajectoryError(
                "rl.mode full: the held-out check of dense snapshots needs --base-model and --start-weights"
            )
        dense, start, base = load_dense_round(config, snapshots, base_model, start_weights)

        def trajectory_of(early: Mapping[int, Any]) -> pd.DataFrame:
            return dense_round_trajectory(config, early, start, base, round_index).to_pandas()

        def truth(module: str) -> tuple[torch.Tensor, torch.Tensor]:
            delta = dense[steps[-1]][module] - dense[cutoff][module]
            return delta, torch.eye(delta.shape[1])

        states: Mapping[int, Any] = dense
    else:
        adapters = load_snapshots(snapshots)

        def trajectory_of(early: Mapping[int, Any]) -> pd.DataFrame:
            return round_trajectory(config, early, start_adapter, offset, round_index).to_pandas()

        def truth(module: str) -> tuple[torch.Tensor, torch.Tensor]:
            return difference(adapters[steps[-1]], adapters[cutoff], module)

        states = adapters
    steps, horizon = sorted(states), config["jump"]["horizon"]
    cutoff = steps[-1] - horizon
    early = {step: state for step, state in states.items() if step <= cutoff}
    rows = []
    if any(step + horizon in early for step in early):
        trajectory = trajectory_of(early)
        accuracy = pd.read_parquet(evaluations)
        accuracy = accuracy[accuracy["step"] <= cutoff]
        for name, method_class in REGISTRY.items():
            method = method_class(config["extrapolators"].get(name, {}), seed=stage_seed(seed, round_index))
            try:
                method.fit(trajectory, accuracy)
                predicted = method.predict(trajectory)
            except ExtrapolatorError as error:  # e.g. alpharl on a flat accuracy curve: reported, not fatal
                rows.append({"method": name, "module": "", "error": str(error)})
                continue
            for module, delta in predicted.items():
                rows.append({"method": name, "module": module, **compare(delta.factors(), truth(module)), "error": ""})
    table = pd.DataFrame(rows, columns=list(HELDOUT_COLUMNS))
    write_parquet(table, output)
    means = table.dropna(subset=["rank1_cosine"]).groupby("method")[["rank1_cosine", "relative_error"]].mean()
    metrics = {f"{method}_{column}": float(value) for method, row in means.iterrows() for column, value in row.items()}
    return StageRecord(metrics=metrics, artifacts=[output])
