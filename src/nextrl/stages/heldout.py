"""The heldout stage: every registered extrapolator, fitted on the early part of one round, predicts its last target.

The trajectory as if the round had ended at t* = T − H is rebuilt from the snapshots up to t* (same formulas, LoRA
or dense: :func:`nextrl.lowrank.trajectory_table.load_round`); each method of :data:`nextrl.extrapolators.REGISTRY` is
fitted on it with the experiment's options (evaluations up to t* for accuracy-driven methods) and predicts W_T − W_{t*},
which :func:`nextrl.lowrank.prediction_error.compare` scores against the exact truth. ``repeat_last`` is the trivial
baseline; predicting zero scores relative error 1; a method that cannot fit the round (ExtrapolatorError) gets one row
saying why. Output ``heldout.parquet``: HELDOUT_COLUMNS, one row per (method, module); empty when the round is too short
(it needs a target pair before t*, i.e. at least 2H of snapshots).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.extrapolators import REGISTRY
from nextrl.extrapolators.base import ExtrapolatorError
from nextrl.jobs.artifacts import write_parquet
from nextrl.jobs.tracking import StageRecord
from nextrl.lowrank.prediction_error import HELDOUT_COLUMNS, compare
from nextrl.lowrank.round_snapshots import load_round
from nextrl.seeding import stage_seed


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
    does (:func:`nextrl.lowrank.trajectory_table.load_round`)."""
    round_ = load_round(config, round_index, snapshots, start_adapter, offset, base_model, start_weights)
    states = round_.snapshots
    steps, horizon = sorted(states), config["jump"]["horizon"]
    cutoff = steps[-1] - horizon
    early = {step: state for step, state in states.items() if step <= cutoff}
    rows = []
    if any(step + horizon in early for step in early):
        trajectory = round_.table(early).to_pandas()
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
                truth = round_.delta(steps[-1], cutoff, module)
                rows.append({"method": name, "module": module, **compare(delta.factors(), truth), "error": ""})
    table = pd.DataFrame(rows, columns=list(HELDOUT_COLUMNS))
    write_parquet(table, output)
    means = table.dropna(subset=["rank1_cosine"]).groupby("method")[["rank1_cosine", "relative_error"]].mean()
    metrics = {f"{method}_{column}": float(value) for method, row in means.iterrows() for column, value in row.items()}
    return StageRecord(metrics=metrics, artifacts=[output])
