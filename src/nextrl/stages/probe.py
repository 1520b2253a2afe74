"""The probe stage: validation accuracy along one round's own ray W_start + k·(W_T − W_start), k ∈ PROBE_KS
(:mod:`nextrl.lowrank.ray`). Output ``probe.parquet`` (PROBE_COLUMNS)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.jobs.artifacts import write_parquet
from nextrl.jobs.tracking import StageRecord
from nextrl.lowrank.adapters import load_adapter, save_scale_one_adapter
from nextrl.lowrank.ray import PROBE_COLUMNS, PROBE_KS, ray_factors
from nextrl.rollouts.accuracy import score_adapters
from nextrl.tasks import make_scorer


def run(
    config: Mapping[str, Any],
    *,
    start_model: Path,
    adapter: Path,
    start_adapter: Path | None,
    data: Path,
    output: Path,
    arm: str,
    seed: int,
    round_index: int,
) -> StageRecord:
    """``adapter``: the round's final LoRA (W_T); ``start_adapter``: the LoRA it resumed (None for a fresh one)."""
    end = load_adapter(adapter)
    start = load_adapter(start_adapter) if start_adapter is not None else None
    items = pd.read_parquet(data / "validation.parquet")
    with tempfile.TemporaryDirectory(prefix=".probe.", dir=output.parent) as scratch:
        adapters = {}
        for k in PROBE_KS:
            adapters[f"k={k:g}"] = Path(scratch) / f"k_{k:g}"
            save_scale_one_adapter(ray_factors(end, start, k), end.config, adapters[f"k={k:g}"])
        scorer = make_scorer(config["task"])
        scored = score_adapters(
            start_model, adapters, items, scorer, config["eval"], config["rollout"], config["runtime"]
        )
    table = pd.DataFrame({"arm": arm, "seed": seed, "round": round_index, "k": list(PROBE_KS),
                          "accuracy": scored["accuracy"], "n_items": scored["n_items"]})  # fmt: skip
    write_parquet(table[list(PROBE_COLUMNS)], output)
    return StageRecord(
        metrics={f"accuracy_k{k:g}": float(a) for k, a in zip(PROBE_KS, scored["accuracy"], strict=True)}
    )
