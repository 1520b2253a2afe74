"""Held-out accuracy: greedy decoding of every item of a split, scored by the task's verifier.

Per-item table schema: ``index`` int64, ``completion`` str, ``reward`` float64.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nextrl.rollouts.generation import GenerationBackend, HFGenerateBackend
from nextrl.tasks import Scorer


def evaluate_split(
    backend: GenerationBackend,
    split: pd.DataFrame,
    scorer: Scorer,
    max_new_tokens: int,
    batch_size: int,
    description: str = "eval",
) -> pd.DataFrame:
    """Greedy completions and rewards for every item of ``split``; accuracy is the mean reward."""
    rows = []
    progress = tqdm(total=len(split), desc=description, leave=False, mininterval=2.0)
    correct = 0.0
    for start in range(0, len(split), batch_size):
        batch = split.iloc[start : start + batch_size]
        rollouts = backend.generate(batch["prompt"].tolist(), 1, max_new_tokens, temperature=0.0)
        for index, entry, text in zip(batch["index"], batch["entry"], rollouts.texts):
            reward = scorer(text, entry)
            correct += reward
            rows.append({"index": int(index), "completion": text, "reward": float(reward)})
        progress.update(len(batch))
        progress.set_postfix(accuracy=f"{correct / len(rows):.3f}", refresh=False)
    progress.close()
    return pd.DataFrame(rows, columns=["index", "completion", "reward"])


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: pd.DataFrame,
    scorer: Scorer,
    evaluation: Mapping[str, Any],
    description: str = "eval",
) -> pd.DataFrame:
    """:func:`evaluate_split` of ``model`` with the config's ``eval`` settings (batch size, response length)."""
    backend = HFGenerateBackend(model, tokenizer, evaluation["batch_size"])
    return evaluate_split(backend, items, scorer, evaluation["max_new_tokens"], evaluation["batch_size"], description)


def score_adapters(
    start_model: Path,
    adapters: Mapping[str, Path],
    items: pd.DataFrame,
    scorer: Scorer,
    evaluation: Mapping[str, Any],
    rollout: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Greedy accuracy on ``items`` of ``start_model`` with each PEFT adapter in turn (one model, adapters loaded
    side by side, on ``runtime``'s device and dtype); columns name, accuracy, n_items, seconds (load + evaluation of
    that adapter). With ``rollout.backend: vllm``, one vLLM engine holds every adapter at once and one generate scores
    them all
    (:func:`nextrl.rollouts.vllm_engine.candidate_accuracies`)."""
    from nextrl.models import load_tokenizer

    tokenizer = load_tokenizer(start_model)
    if rollout is not None and rollout["backend"] == "vllm":
        from nextrl.rollouts.vllm_engine import adapter_rank, candidate_accuracies, engine_options, vllm_api

        api = vllm_api()
        ranks = [adapter_rank(directory) for directory in adapters.values()]
        options = engine_options(
            ranks, rollout["gpu_memory_utilization"], 0, runtime["dtype"] if runtime else "float32"
        )
        engine = api.LLM(model=str(start_model), **options)
        return candidate_accuracies(api, engine, tokenizer, adapters, items, scorer, evaluation["max_new_tokens"],
                                    options["max_lora_rank"])  # fmt: skip
    from peft import PeftModel

    from nextrl.runtime import inference_model

    model: PeftModel | None = None
    rows = []
    for name, directory in adapters.items():
        began = time.perf_counter()
        adapter_name = name.replace(".", "_")  # PEFT adapter names become module names: no dots
        if model is None:
            model = PeftModel.from_pretrained(
                inference_model(start_model, runtime), directory, adapter_name=adapter_name
            )
        else:
            model.load_adapter(directory, adapter_name=adapter_name)
        model.set_adapter(adapter_name)
        model.eval()
        scored = evaluate_model(model, tokenizer, items, scorer, evaluation, name)
        rows.append({"name": name, "accuracy": float(scored["reward"].mean()), "n_items": len(scored),
                     "seconds": time.perf_counter() - began})  # fmt: skip
    return pd.DataFrame(rows, columns=["name", "accuracy", "n_items", "seconds"])
