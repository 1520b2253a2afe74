"""The evaluate stage: accuracy of a final model (start model + its round's adapter, or the base model alone) on one split, once.

The test split is touched only here, once per (arm, seed) final model. Output Parquet: the per-item table of
:func:`nextrl.evaluation.evaluate_split` (index, completion, reward); accuracy is its mean reward.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from peft import PeftModel

from nextrl.artifacts import write_parquet
from nextrl.evaluation import evaluate_split
from nextrl.generation import HFGenerateBackend
from nextrl.models import load_model, load_tokenizer
from nextrl.tasks import SPLITS, make_scorer


def evaluate_final(
    start_model: Path, adapter: Path | None, data_dir: Path, split: str, config: Mapping[str, Any], output: Path
) -> float:
    """Evaluate ``start_model`` (with ``adapter`` if given) on ``split`` greedily; write the per-item table."""
    if split not in SPLITS:
        raise ValueError(f"split: {split!r} is not one of {SPLITS}")
    model = load_model(start_model)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    backend = HFGenerateBackend(model, load_tokenizer(start_model), config["eval"]["batch_size"])
    items = pd.read_parquet(data_dir / f"{split}.parquet")
    scored = evaluate_split(backend, items, make_scorer(config["task"]), config["eval"]["max_new_tokens"],
                            config["eval"]["batch_size"], f"{split} eval")  # fmt: skip
    write_parquet(scored, output)
    return float(scored["reward"].mean())
