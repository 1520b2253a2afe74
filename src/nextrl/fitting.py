"""The fit stage and the prediction step of extrapolate: one extrapolator fitted on one round's trajectory.

The predictor directory holds the extrapolator's own files (``save``), ``extrapolator.json`` (its registry name,
options and fit seconds, so any stage can reload it) and ``fit.parquet`` (the fit log: epoch, group, loss, lr).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.artifacts import atomic_path
from nextrl.extrapolator import Extrapolator, ModuleDelta, make_extrapolator, validate_trajectory

MANIFEST = "extrapolator.json"


def fit_extrapolator(
    name: str, options: Mapping[str, Any], trajectory_path: Path, evaluations_path: Path | None, output: Path
) -> pd.DataFrame:
    """Fit extrapolator ``name`` on a trajectory table and write the predictor directory atomically."""
    trajectory = pd.read_parquet(trajectory_path)
    validate_trajectory(trajectory)
    evaluations = pd.read_parquet(evaluations_path) if evaluations_path is not None else None
    extrapolator = make_extrapolator(name, dict(options))
    began = time.perf_counter()
    log = extrapolator.fit(trajectory, evaluations)
    seconds = time.perf_counter() - began
    with atomic_path(output) as staging:
        staging.mkdir()
        extrapolator.save(staging)
        (staging / MANIFEST).write_text(json.dumps({"name": name, "options": dict(options), "seconds": seconds}))
        log.to_parquet(staging / "fit.parquet", index=False)
    return log


def load_extrapolator(directory: Path) -> Extrapolator:
    manifest = json.loads((directory / MANIFEST).read_text())
    return type(make_extrapolator(manifest["name"], manifest["options"])).load(directory)


def predict_deltas(predictor_dir: Path, trajectory_path: Path) -> dict[str, ModuleDelta]:
    """The fitted extrapolator's predicted delta per module from the trajectory's last snapshot."""
    return load_extrapolator(predictor_dir).predict(pd.read_parquet(trajectory_path))
