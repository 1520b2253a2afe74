"""One RL chunk: ``chunk_steps`` steps of GRPO-family RLVR with a LoRA adapter (peft), resumable exactly.

Per step (GRPO, Shao et al. 2024, arXiv 2402.03300 §4.1; PPO-clip, Schulman et al. 2017 eq. 7):
sample ``group_size`` completions for each of ``prompts_per_step`` prompts at ``temperature`` (full distribution),
score them with the task's verifier, turn rewards into advantages (:mod:`nextrl.advantages`), then take
``updates_per_batch`` optimizer steps on the clipped surrogate (:mod:`nextrl.grpo_loss`) with old log-probs stored
at sampling time, optionally plus a KL penalty to the base model (adapters disabled).

Output directory (written atomically as a whole)::

    snapshots/step_<t>/     PEFT adapter (fp32 safetensors) every ``snapshot_every`` steps, t = global RL step
    state/adapter/          the adapter at the chunk's end
    state/training_state.pt optimizer state, torch RNG state, data cursor, global step
    metrics.parquet         one row per RL step (METRIC_COLUMNS)
    eval.parquet            validation accuracy at every snapshot, and at the start unless resumed (EVAL_COLUMNS)

Exact resume: a chunk that starts from ``state/`` of the previous chunk continues bit-identically to one
process running all steps (same seed, CPU, same thread count): the data order is a pure function of
(seed, cursor), the torch RNG state is restored, and greedy evaluation consumes no randomness.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm import tqdm
from transformers import PreTrainedModel

from nextrl.advantages import compute_advantages
from nextrl.artifacts import atomic_path
from nextrl.evaluation import evaluate_split
from nextrl.generation import HFGenerateBackend, Rollouts
from nextrl.grpo_loss import kl_penalty, masked_aggregate, policy_loss, token_entropy, token_logprobs
from nextrl.models import load_model, load_tokenizer
from nextrl.tasks import Scorer, make_scorer

METRIC_COLUMNS = (
    "step", "reward_mean", "reward_std", "accuracy", "loss", "kl", "entropy",
    "response_len", "grad_norm", "lr", "tokens", "seconds",
)  # fmt: skip
EVAL_COLUMNS = ("step", "split", "accuracy", "n_items")
TRAINING_STATE = "training_state.pt"


class RLError(RuntimeError):
    """RL cannot go on (e.g. a non-finite loss); the message names the step and the quantity."""


def train_order(seed: int, cursor: int, count: int, dataset_size: int) -> np.ndarray:
    """Indices of the next ``count`` training prompts: epoch e is a permutation seeded by (seed, e)."""
    indices = []
    while len(indices) < count:
        epoch, offset = divmod(cursor, dataset_size)
        permutation = np.random.default_rng([seed, epoch]).permutation(dataset_size)
        take = min(count - len(indices), dataset_size - offset)
        indices.extend(permutation[offset : offset + take].tolist())
        cursor += take
    return np.asarray(indices, dtype=np.int64)


def attach_lora(model: PreTrainedModel, lora: Mapping[str, Any], seed: int) -> PeftModel:
    """A fresh trainable LoRA adapter (B = 0, so the model starts unchanged), initialised from ``seed``."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(lora["target_modules"]) - present)
    if missing:
        raise ValueError(f"lora.target_modules: the model has no module named {missing}")
    torch.manual_seed(seed)
    config = LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=0.0, target_modules=list(lora["target_modules"]),
        use_rslora=lora.get("rslora", False), task_type="CAUSAL_LM",
    )  # fmt: skip
    return get_peft_model(model, config)


def completion_logits(model: torch.nn.Module, rollouts: Rollouts) -> torch.Tensor:
    """Logits predicting each completion token, (B, C, V); positions follow the attention mask as in generate."""
    attention = rollouts.attention_mask
    position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=rollouts.input_ids, attention_mask=attention, position_ids=position_ids).logits
    prompt_length = rollouts.prompt_ids.shape[1]
    return logits[:, prompt_length - 1 : -1, :]


def run_rl_chunk(
    start_model: Path,
    resume_state: Path | None,
    data_dir: Path,
    output: Path,
    config: Mapping[str, Any],
    seed: int,
    round_index: int,
) -> None:
    """Train one chunk and write its artifacts to ``output`` atomically (see the module docstring)."""
    rl, lora, evaluation = config["rl"], config["lora"], config["eval"]
    first_step = round_index * rl["chunk_steps"]
    tokenizer = load_tokenizer(start_model)
    base = load_model(start_model)
    if resume_state is None:
        model = attach_lora(base, lora, seed=seed * 1000 + round_index)
        optimizer_state, cursor = None, 0
        torch.manual_seed(seed * 1000 + round_index)
    else:
        model = PeftModel.from_pretrained(base, resume_state / "adapter", is_trainable=True)
        saved = torch.load(resume_state / TRAINING_STATE, weights_only=False)
        if saved["step"] != first_step:
            raise RLError(f"{resume_state}: state is at step {saved['step']} but round {round_index} starts at {first_step}")
        optimizer_state, cursor = saved["optimizer"], saved["cursor"]
        torch.set_rng_state(saved["torch_rng"])
    model.float()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=rl["lr"], weight_decay=rl["weight_decay"], betas=(0.9, 0.99))
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)

    train = pd.read_parquet(data_dir / "train.parquet")
    validation = pd.read_parquet(data_dir / "validation.parquet")
    scorer = make_scorer(config["task"])
    backend = HFGenerateBackend(model, tokenizer, batch_size=rl["generation_batch_size"])
    eval_backend = HFGenerateBackend(model, tokenizer, batch_size=evaluation["batch_size"])

    def validation_accuracy(step: int) -> dict[str, Any]:
        scored = evaluate_split(eval_backend, validation, scorer, evaluation["max_new_tokens"], evaluation["batch_size"])
        return {"step": step, "split": "validation", "accuracy": float(scored["reward"].mean()), "n_items": len(scored)}

    with atomic_path(output) as staging:
        staging.mkdir()
        # A resumed chunk starts from the previous chunk's last snapshot, which that chunk already evaluated.
        evaluations = [] if resume_state is not None else [validation_accuracy(first_step)]
        metrics = []
        progress = tqdm(range(first_step + 1, first_step + rl["chunk_steps"] + 1), desc=f"RL round {round_index}", mininterval=2.0)
        for step in progress:
            began = time.perf_counter()
            batch = train.iloc[train_order(seed, cursor, rl["prompts_per_step"], len(train))]
            cursor += rl["prompts_per_step"]
            row = grpo_step(model, optimizer, backend, scorer, batch, rl)
            if not math.isfinite(row["loss"]):
                raise RLError(f"rl: non-finite loss ({row['loss']}) at RL step {step}; lower rl.lr or check the rewards")
            metrics.append({"step": step, **row, "seconds": time.perf_counter() - began})
            if (step - first_step) % rl["snapshot_every"] == 0:
                model.save_pretrained(staging / "snapshots" / f"step_{step}", safe_serialization=True)
                evaluations.append(validation_accuracy(step))
            progress.set_postfix(reward=f"{row['reward_mean']:.3f}", val_acc=f"{evaluations[-1]['accuracy']:.3f}" if evaluations else "-")
        progress.close()
        last_step = first_step + rl["chunk_steps"]
        model.save_pretrained(staging / "state" / "adapter", safe_serialization=True)
        torch.save(
            {"step": last_step, "cursor": cursor, "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
            staging / "state" / TRAINING_STATE,
        )
        pd.DataFrame(metrics, columns=list(METRIC_COLUMNS)).to_parquet(staging / "metrics.parquet", index=False)
        pd.DataFrame(evaluations, columns=list(EVAL_COLUMNS)).to_parquet(staging / "eval.parquet", index=False)


def grpo_step(
    model: PeftModel,
    optimizer: torch.optim.Optimizer,
    backend: HFGenerateBackend,
    scorer: Scorer,
    batch: pd.DataFrame,
    rl: Mapping[str, Any],
) -> dict[str, float]:
    """Sample, score, and take ``updates_per_batch`` clipped policy-gradient steps; returns the step's metrics."""
    group_size, temperature = rl["group_size"], rl["temperature"]
    rollouts = backend.generate(batch["prompt"].tolist(), group_size, rl["max_new_tokens"], temperature)
    entries = [entry for entry in batch["entry"] for _ in range(group_size)]
    rewards = torch.tensor([scorer(text, entry) for text, entry in zip(rollouts.texts, entries)], dtype=torch.float32)
    advantages = compute_advantages(rl["advantage"], rewards, group_size, scale_by_std=rl["scale_by_std"])
    mask = rollouts.completion_mask
    completion_ids = rollouts.completion_ids
    with torch.no_grad():
        old_logprobs = token_logprobs(completion_logits(model, rollouts), completion_ids, temperature)
        ref_logprobs = None
        if rl["kl_coef"] > 0:
            with model.disable_adapter():
                ref_logprobs = token_logprobs(completion_logits(model, rollouts), completion_ids, temperature)
    model.train()
    for _ in range(rl["updates_per_batch"]):
        logits = completion_logits(model, rollouts)
        logprobs = token_logprobs(logits, completion_ids, temperature)
        loss, stats = policy_loss(
            logprobs, old_logprobs, advantages, mask, rl["clip_eps"], rl["aggregation"],
            ref_logprobs=ref_logprobs, kl_coef=rl["kl_coef"], kl_estimator=rl["kl_estimator"],
        )  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            break
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], rl["max_grad_norm"]
        )
        optimizer.step()
    with torch.no_grad():
        entropy = float(masked_aggregate(token_entropy(logits.detach(), temperature), mask, "token"))
        kl = 0.0 if ref_logprobs is None else float(masked_aggregate(kl_penalty(logprobs.detach(), ref_logprobs, "k3"), mask, "token"))
    return {
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std()),
        "accuracy": float((rewards >= 1.0).float().mean()),
        "loss": float(loss.detach()),
        "kl": kl,
        "entropy": entropy,
        "response_len": float(mask.sum(dim=1).mean()),
        "grad_norm": float(grad_norm) if torch.isfinite(loss) else float("nan"),
        "lr": optimizer.param_groups[0]["lr"],
        "tokens": int(mask.sum()),
    }
