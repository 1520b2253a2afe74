"""Supervised warm start of the embedded tiny model, so that RL begins from partial accuracy.

Standard next-token cross-entropy on ``prompt + answer + EOS`` with the loss on the answer and EOS only
(prompt tokens are masked), AdamW, a fixed number of steps over seeded random mini-batches of the train split.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def supervised_batch(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], answers: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, labels) right-padded; labels are −100 except on answer and EOS tokens."""
    rows = []
    for prompt, answer in zip(prompts, answers):
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, targets) in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(targets)
        attention[row, : len(ids)] = 1
    return input_ids, attention, labels


def warm_start(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: pd.DataFrame,
    settings: Mapping[str, Any],
    seed: int,
) -> list[float]:
    """Train ``model`` in place for ``settings['steps']`` steps; returns the loss of every step."""
    generator = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.0)
    model.train()
    losses = []
    progress = tqdm(range(settings["steps"]), desc="warm start", mininterval=2.0)
    for _ in progress:
        rows = train.iloc[generator.integers(0, len(train), settings["batch_size"])]
        input_ids, attention, labels = supervised_batch(tokenizer, rows["prompt"].tolist(), rows["answer"].tolist())
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses
