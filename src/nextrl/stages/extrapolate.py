"""The extrapolate stage: the fitted extrapolator's ΔŴ and the candidate jumps W_T + α·ΔŴ (:mod:`nextrl.lowrank.jumps`).

Output directory: ``alpha_<α>/`` PEFT adapters over the round's start model (over W_T after full-parameter RL;
α = 0 always), ``jump.safetensors``
(ΔŴ per module as low-rank factors, :func:`nextrl.lowrank.adapters.save_offset` format) and ``candidates.parquet``
(alpha float64, adapter str, delta_frob float64 = ‖α·ΔŴ‖_F over all modules).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.extrapolators import REGISTRY
from nextrl.extrapolators.base import read_manifest
from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.lowrank.adapters import load_adapter, save_offset
from nextrl.lowrank.jumps import JumpError, write_candidates


def run(
    config: Mapping[str, Any], *, predictor: Path, trajectory: Path, adapter: Path | None, output: Path
) -> StageRecord:
    """``adapter``: the round's final LoRA (None after full-parameter RL: candidates are then over W_T itself)."""
    method = read_manifest(predictor)["extrapolator"]
    deltas = REGISTRY[method].load(predictor).predict(pd.read_parquet(trajectory))
    for module, delta in deltas.items():
        if not delta.is_finite():
            raise JumpError(
                f"{method}: predicted delta for module {module} is not finite; refusing to write any candidate"
            )
    jump = {module: delta.factors() for module, delta in deltas.items()}
    with atomic_path(output) as staging:
        staging.mkdir()
        table = write_candidates(
            load_adapter(adapter) if adapter is not None else None, jump, config["jump"]["alphas"], staging
        )
        save_offset(jump, staging / "jump.safetensors")
        table.to_parquet(staging / "candidates.parquet", index=False)
    return StageRecord(metrics={"candidates": float(len(table)), "max_delta_frob": float(table["delta_frob"].max())})
