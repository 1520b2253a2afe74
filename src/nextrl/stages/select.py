"""The select stage: every candidate jump scored on the selection split, the best one applied to the next start model.

Selection reads only the ``selection`` split (choosing α on the curves' validation split would make them
optimistic, and on test would leak it, docs/method.md, "Departures from the reference code"). α = 0 — no jump — is
always a candidate, so a jump never lowers selection accuracy; ties go to the smaller α
(:func:`nextrl.lowrank.jumps.choose`). The chosen jump is then applied as ``jump.continuation`` says
(:mod:`nextrl.lowrank.jumps`): ``carry`` folds α·ΔŴ into the round's start model (α = 0: the start model's files are
copied unchanged), ``fresh`` merges the round's adapter and α·ΔŴ. After full-parameter RL the start model is the round's
own W_T, both fold only α·ΔŴ, and ``fresh`` only restarts AdamW (rl_chunk).

Output directory: ``model/`` (the next round's start model, fp32 HF directory), ``offset.safetensors`` (its
low-rank offset from the experiment's base model, :mod:`nextrl.lowrank.adapters`) and ``selection.parquet`` (alpha
float64, accuracy float64 on the selection split, selected bool, seconds float64).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.lowrank.adapters import concat_factors, load_adapter, load_offset, save_offset
from nextrl.lowrank.jumps import add_low_rank, choose
from nextrl.models import load_model, load_tokenizer, save_model
from nextrl.rollouts.accuracy import score_adapters
from nextrl.tasks import make_scorer


def run(
    config: Mapping[str, Any],
    *,
    start_model: Path,
    start_offset: Path | None,
    adapter: Path | None,
    candidates: Path,
    data: Path,
    output: Path,
) -> StageRecord:
    """``adapter``: the round's final LoRA; ``start_offset``: the start model's offset (None in round 0). After
    full-parameter RL, ``start_model`` is the round's own final model W_T and there is no adapter."""
    table = pd.read_parquet(candidates / "candidates.parquet")
    items = pd.read_parquet(data / "selection.parquet")
    scorer = make_scorer(config["task"])
    adapters = {name: candidates / name for name in table["adapter"]}  # named by lowrank.jumps.candidate_name
    scored = score_adapters(start_model, adapters, items, scorer, config["eval"], config["rollout"], config["runtime"])
    scores = pd.DataFrame(
        {"alpha": table["alpha"].astype(float), "accuracy": scored["accuracy"], "seconds": scored["seconds"]}
    )
    chosen = choose(scores)
    scores.insert(2, "selected", scores["alpha"] == chosen)

    previous_offset = load_offset(start_offset) if start_offset is not None else {}
    new_folds = []
    if config["jump"]["continuation"] == "fresh" and adapter is not None:
        new_folds.append(load_adapter(adapter).scaled_factors())
    if chosen != 0.0:
        jump = load_offset(candidates / "jump.safetensors")
        new_folds.append({module: (chosen * left, right) for module, (left, right) in jump.items()})
    with atomic_path(output) as staging:
        staging.mkdir()
        if new_folds:
            next_start = load_model(start_model)
            for fold in new_folds:
                add_low_rank(next_start, fold, 1.0)
            save_model(next_start, load_tokenizer(start_model), staging / "model")
        else:  # carry-over with α = 0: the start model goes on unchanged, bit for bit
            shutil.copytree(start_model, staging / "model")
        save_offset(concat_factors(previous_offset, *new_folds), staging / "offset.safetensors")
        scores.to_parquet(staging / "selection.parquet", index=False)
    chosen_accuracy = float(scores.loc[scores["selected"], "accuracy"].iloc[0])
    return StageRecord(
        metrics={
            "selected_alpha": chosen,
            "selected_accuracy": chosen_accuracy,
            "no_jump_accuracy": float(scores["accuracy"].iloc[0]),
        },
        artifacts=[output / "selection.parquet"],
    )
