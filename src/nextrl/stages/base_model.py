"""The base_model stage: the start model of every arm (round 0).

``model.source: tiny`` builds the embedded character tokenizer and tiny Qwen2 model and warm-starts it on the
train split (:mod:`nextrl.warm_start`); ``model.source: local`` checks a local HF model directory and copies it
(so the DAG owns an immutable ``base/``). Either way the output is a standard HF model directory, written
atomically, with ``warm_start.parquet`` (step, loss) for the tiny model.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.models import build_char_tokenizer, build_tiny_model, check_model_dir, save_model
from nextrl.runtime import resolve_device
from nextrl.warm_start import warm_start


def run(config: Mapping[str, Any], *, data: Path, output: Path) -> StageRecord:
    model_config = config["model"]
    with atomic_path(output) as staging:
        if model_config["source"] == "local":
            source = Path(model_config["path"])
            check_model_dir(source)
            shutil.copytree(source, staging)
            return StageRecord(params={"model": dict(model_config)})
        tokenizer = build_char_tokenizer()
        model = build_tiny_model(tokenizer, model_config["shape"], seed=model_config["seed"])
        model.to(resolve_device(config["runtime"]))
        train = pd.read_parquet(data / "train.parquet")
        losses = warm_start(model, tokenizer, train, model_config["warm_start"], seed=model_config["seed"])
        model.cpu()
        if losses and not math.isfinite(losses[-1]):
            raise ValueError(
                f"model.warm_start: the warm-start loss became non-finite ({losses[-1]}); lower model.warm_start.lr"
            )
        save_model(model, tokenizer, staging)
        pd.DataFrame({"step": range(1, len(losses) + 1), "loss": losses}).to_parquet(
            staging / "warm_start.parquet", index=False
        )
    metrics = {"parameters": float(sum(p.numel() for p in model.parameters()))}
    if losses:
        metrics["warm_start_loss"] = losses[-1]
    return StageRecord(metrics=metrics, params={"model": dict(model_config)})
