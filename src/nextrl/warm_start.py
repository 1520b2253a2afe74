"""Supervised warm start of the embedded tiny model, so that RL begins from partial accuracy.

Standard next-token cross-entropy on ``prompt + answer + EOS`` with the loss on the answer and EOS only
(prompt tokens are masked), AdamW, a fixed number of steps over seeded random mini-batches of the train split.

``off_by_one`` > 0 makes a "sharpening" base (docs/method.md, "The extrapolability probe"): that share of the labels,
drawn per example from its own seeded stream, is replaced by the answer ± 1, so the model learns to put mass on the
right answer and on its neighbours: greedy accuracy well below its pass@k, the regime where RLVR sharpens a distribution
it already has. Above 2/3 the right answer is no longer the labels' mode (each neighbour gets share/2): a model trained
to convergence answers greedily with a neighbour (the default's "near-miss" base, share 0.7: greedy 0.21).

The base's accuracy is not a smooth function of these settings: a partly trained tiny model sits in a phase
transition, and the same settings with another ``model.seed`` or thread count ended anywhere between 0.17 and 0.85
validation accuracy (README, "Choosing the default regime"; ``bench/base_lottery.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nextrl.rl.lr_schedule import cosine_decay


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


def off_by_one_labels(answers: list[str], share: float, generator: np.random.Generator) -> list[str]:
    """``answers`` with a ``share`` of them (each independently) replaced by the integer answer ± 1."""
    noisy = generator.random(len(answers)) < share
    signs = generator.choice([-1, 1], size=len(answers))
    labels = []
    for answer, replace, sign in zip(answers, noisy, signs, strict=True):
        if not replace:
            labels.append(answer)
            continue
        try:
            labels.append(str(int(answer) + int(sign)))
        except ValueError:
            raise ValueError(
                f"model.warm_start.off_by_one: needs integer answers, got {answer!r}; set it to 0 for this task"
            ) from None
    return labels


def warm_start_lr(step: int, settings: Mapping[str, Any]) -> float:
    """Learning rate of optimizer step ``step`` (0-based): constant, or cosine from ``lr`` to 0 over ``steps``
    (:func:`nextrl.rl.lr_schedule.cosine_decay`, Loshchilov & Hutter 2017, SGDR eq. 5 without restarts), so the last
    mini-batches move the weights little. It does not make the base's accuracy independent of the seed or thread
    count (module docstring)."""
    if settings["schedule"] == "constant":
        return settings["lr"]
    return cosine_decay(settings["lr"], step, max(settings["steps"], 1))


def warm_start(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: pd.DataFrame,
    settings: Mapping[str, Any],
    seed: int,
) -> list[float]:
    """Train ``model`` in place (on its device) for ``settings['steps']`` steps; returns the loss of every step."""
    generator = np.random.default_rng(seed)
    label_noise = np.random.default_rng([seed, 1])
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warm_start_lr(step, settings) / settings["lr"])
    model.train()
    losses = []
    progress = tqdm(range(settings["steps"]), desc="warm start", mininterval=2.0)
    for _ in progress:
        rows = train.iloc[generator.integers(0, len(train), settings["batch_size"])]
        answers = rows["answer"].tolist()
        if settings["off_by_one"] > 0:
            answers = off_by_one_labels(answers, settings["off_by_one"], label_noise)
        batch = supervised_batch(tokenizer, rows["prompt"].tolist(), answers)
        input_ids, attention, labels = (tensor.to(model.device) for tensor in batch)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        progress.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return losses


def build_tiny_base(config: Mapping[str, Any], train: pd.DataFrame, output: Path) -> dict[str, float]:
    """The tiny model of ``config["model"]`` (``source: tiny``) built, warm-started on ``train`` on
    ``config["runtime"]``'s device and saved to ``output`` as a HF model directory with ``warm_start.parquet`` (step,
    loss); returns its parameter count and final warm-start loss."""
    from nextrl.models import build_char_tokenizer, build_tiny_model, save_model
    from nextrl.runtime import resolve_device

    settings = config["model"]
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, settings["shape"], seed=settings["seed"])
    model.to(resolve_device(config["runtime"]))
    losses = warm_start(model, tokenizer, train, settings["warm_start"], seed=settings["seed"])
    model.cpu()
    if losses and not math.isfinite(losses[-1]):
        raise ValueError(
            f"model.warm_start: the warm-start loss became non-finite ({losses[-1]}); lower model.warm_start.lr"
        )
    save_model(model, tokenizer, output)
    pd.DataFrame({"step": range(1, len(losses) + 1), "loss": losses}).to_parquet(
        output / "warm_start.parquet", index=False
    )
    metrics = {"parameters": float(sum(p.numel() for p in model.parameters()))}
    return metrics | ({"warm_start_loss": losses[-1]} if losses else {})
