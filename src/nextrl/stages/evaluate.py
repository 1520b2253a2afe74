"""The evaluate stage: accuracy of a final model (start model + its last adapter, or the base model) on one split.

The test split is touched only here, once per (arm, seed) final model and once for the base model. Output: the
per-item table of :func:`nextrl.rollouts.accuracy.evaluate_split` (index, completion, reward); accuracy is its mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from peft import PeftModel

from nextrl.jobs.artifacts import write_parquet
from nextrl.jobs.tracking import StageRecord
from nextrl.models import load_tokenizer
from nextrl.rollouts.accuracy import evaluate_model
from nextrl.runtime import inference_model
from nextrl.tasks import SPLITS, make_scorer


def run(
    config: Mapping[str, Any], *, start_model: Path, adapter: Path | None, data: Path, split: str, output: Path
) -> StageRecord:
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {SPLITS}")
    model = inference_model(start_model, config["runtime"])
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    items = pd.read_parquet(data / f"{split}.parquet")
    scored = evaluate_model(
        model, load_tokenizer(start_model), items, make_scorer(config["task"]), config["eval"], split
    )
    write_parquet(scored, output)
    return StageRecord(metrics={f"{split}_accuracy": float(scored["reward"].mean())}, artifacts=[output])
