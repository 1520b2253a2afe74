"""The fit stage: one round's trajectory fitted by the arm's extrapolator (``method``: the arm's name, or the method a
variant of it runs).

Output directory: the extrapolator's own files (its ``save``; ``options.json`` names it, so extrapolate reloads it
through the registry), ``fit.parquet`` (the fit log: epoch, group, loss, lr; empty for closed-form methods) and
``fit.json`` (``seconds``: in-process fit time, part of the jump's overhead).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.extrapolators import REGISTRY
from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.seeding import stage_seed


def run(
    config: Mapping[str, Any],
    *,
    trajectory: Path,
    evaluations: Path,
    output: Path,
    method: str,
    seed: int,
    round_index: int,
) -> StageRecord:
    options = config["extrapolators"].get(method, {})
    extrapolator = REGISTRY[method](options, seed=stage_seed(seed, round_index))
    began = time.perf_counter()
    log = extrapolator.fit(pd.read_parquet(trajectory), pd.read_parquet(evaluations))
    seconds = time.perf_counter() - began
    with atomic_path(output) as staging:
        staging.mkdir()
        extrapolator.save(staging)
        log.to_parquet(staging / "fit.parquet", index=False)
        (staging / "fit.json").write_text(json.dumps({"seconds": seconds}))
    final = log.sort_values("epoch").groupby("group")["loss"].last() if len(log) else pd.Series(dtype=float)
    metrics = {"seconds": seconds} | {f"final_loss_{group}": float(loss) for group, loss in final.items()}
    return StageRecord(metrics=metrics, params=dict(options), artifacts=[output / "fit.parquet"])
