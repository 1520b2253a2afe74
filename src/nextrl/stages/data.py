"""The data stage: the task's train / selection / validation / test splits (schema: :mod:`nextrl.tasks`).

With ``task.chat`` the prompts are rendered through the chat template of ``tokenizer`` (the base model's directory),
so every split's ``prompt`` stays what the model sees (:func:`nextrl.tasks.render_chat`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.tasks import build_splits, render_chat, write_splits


def run(config: Mapping[str, Any], *, output: Path, tokenizer: Path | None = None) -> StageRecord:
    """Write ``<split>.parquet`` for every split; metrics: item counts and the worst-case standard error 0.5/√n."""
    task = config["task"]
    splits = build_splits(task)
    if task["chat"]:
        if tokenizer is None:
            raise ValueError("task.chat: the data stage needs the base model's directory (--tokenizer)")
        from nextrl.models import load_tokenizer

        chat_tokenizer = load_tokenizer(tokenizer)
        for frame in splits.values():
            frame["prompt"] = render_chat(frame["prompt"].tolist(), chat_tokenizer, task["system_prompt"])
    with atomic_path(output) as staging:
        staging.mkdir()
        write_splits(splits, staging)
    metrics = {f"{name}_items": float(len(frame)) for name, frame in splits.items()}
    metrics |= {f"{name}_max_standard_error": 0.5 / len(frame) ** 0.5 for name, frame in splits.items()}
    return StageRecord(metrics=metrics, params={"task": dict(task)})
