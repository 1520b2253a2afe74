"""The select stage: score every candidate jump on the validation split, keep the best, merge it in fp32.

Selection never touches the test split (choosing α on the test benchmarks would leak it, method.md §4). α = 0 —
the unjumped model — is always a candidate, so a jump never lowers validation accuracy; ties go to the smaller α.
The selected candidate merged into the round's start model (fp32) is the start model of the next round, which
trains a fresh LoRA (design.md, "After a jump").

``selection.parquet`` schema: alpha float64, accuracy float64 (validation), selected bool, seconds float64.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from peft import PeftModel

from nextrl.artifacts import atomic_path
from nextrl.evaluation import evaluate_split
from nextrl.generation import HFGenerateBackend
from nextrl.models import load_model, load_tokenizer, save_model
from nextrl.tasks import make_scorer


def choose(scores: pd.DataFrame) -> float:
    """The α with the highest validation accuracy; ties go to the smallest α (0 = no jump)."""
    best = scores["accuracy"].max()
    return float(scores.loc[scores["accuracy"] == best, "alpha"].min())


def select_candidate(
    start_model: Path, candidates_dir: Path, data_dir: Path, config: Mapping[str, Any], output: Path
) -> pd.DataFrame:
    """Write ``output/selection.parquet`` and ``output/model/`` (the selected candidate merged, fp32)."""
    evaluation = config["eval"]
    candidates = pd.read_parquet(candidates_dir / "candidates.parquet")
    validation = pd.read_parquet(data_dir / "validation.parquet")
    scorer = make_scorer(config["task"])
    tokenizer = load_tokenizer(start_model)
    model: PeftModel | None = None
    rows = []
    for alpha, adapter in zip(candidates["alpha"], candidates["adapter"]):
        began = time.perf_counter()
        name = adapter.replace(".", "_")
        if model is None:
            model = PeftModel.from_pretrained(load_model(start_model), candidates_dir / adapter, adapter_name=name)
        else:
            model.load_adapter(candidates_dir / adapter, adapter_name=name)
        model.set_adapter(name)
        model.eval()
        backend = HFGenerateBackend(model, tokenizer, evaluation["batch_size"])
        scored = evaluate_split(backend, validation, scorer, evaluation["max_new_tokens"], evaluation["batch_size"], f"α={alpha:g}")
        rows.append({"alpha": float(alpha), "accuracy": float(scored["reward"].mean()), "seconds": time.perf_counter() - began})
    scores = pd.DataFrame(rows)
    chosen = choose(scores)
    scores.insert(2, "selected", scores["alpha"] == chosen)
    chosen_adapter = candidates.loc[candidates["alpha"] == chosen, "adapter"].iloc[0]
    with atomic_path(output) as staging:
        staging.mkdir()
        merged = PeftModel.from_pretrained(load_model(start_model), candidates_dir / chosen_adapter).merge_and_unload()
        with torch.no_grad():
            for name, parameter in merged.named_parameters():
                if not torch.isfinite(parameter).all():
                    raise ValueError(f"merged candidate α={chosen:g} has a non-finite weight in {name}")
        save_model(merged.float(), tokenizer, staging / "model")
        scores.to_parquet(staging / "selection.parquet", index=False)
    return scores
