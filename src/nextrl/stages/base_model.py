"""The base_model stage: the start model of every arm (round 0).

``model.source: tiny`` builds the embedded character tokenizer and tiny Qwen2 model and warm-starts it on the
train split (:mod:`nextrl.warm_start`); ``model.source: shipped`` copies a base that ships with nextrl after checking
its digests (:mod:`nextrl.shipped_base`: the default's, identical on every machine); ``model.source: local`` checks a
local HF model directory and copies it (so the DAG owns an immutable ``base/``); ``model.source: gguf`` dequantises a
GGUF file (:mod:`nextrl.gguf_base`). Either way the output is a standard HF model directory, written atomically, with
``warm_start.parquet`` (step, loss) for a tiny or shipped model.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.models import check_model_dir
from nextrl.shipped_base import WEIGHTS, copy_shipped_base
from nextrl.warm_start import build_tiny_base


def run(config: Mapping[str, Any], *, data: Path | None, output: Path) -> StageRecord:
    """``data``: the splits (the tiny model's warm start reads the train split; other sources take none)."""
    model_config = config["model"]
    with atomic_path(output) as staging:
        if model_config["source"] == "shipped":
            recorded = copy_shipped_base(model_config["name"], staging)
            return StageRecord(params={"model": dict(model_config), "sha256": recorded["sha256"][WEIGHTS]})
        if model_config["source"] == "gguf":
            from nextrl.gguf_base import dequantise

            source = dequantise(model_config, staging)
            return StageRecord(params={"model": dict(model_config), "gguf_file": str(source)})
        if model_config["source"] == "local":
            source = Path(model_config["path"])
            check_model_dir(source)
            shutil.copytree(source, staging)
            return StageRecord(params={"model": dict(model_config)})
        if data is None:
            raise ValueError("model.source: tiny warm-starts on the train split; the base_model stage needs --data")
        metrics = build_tiny_base(config, pd.read_parquet(data / "train.parquet"), staging)
    return StageRecord(metrics=metrics, params={"model": dict(model_config)})
