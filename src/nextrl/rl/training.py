"""The RL training loop's pieces: data order, LoRA attachment, one GRPO-family step, and the exact-resume state.

Per step (GRPO, Shao et al. 2024, arXiv 2402.03300 §4.1; PPO-clip, Schulman et al. 2017 eq. 7):
sample ``group_size`` completions for each of ``prompts_per_step`` prompts at ``temperature`` (full distribution),
score them with the task's verifier, turn rewards into advantages (:mod:`nextrl.rl.advantages`), then take
``updates_per_batch`` optimizer steps on the clipped surrogate (:mod:`nextrl.rl.loss`) with old log-probs stored
at sampling time, optionally plus a KL penalty to the base model (adapters disabled).

Exact resume: a chunk that starts from the state of the previous chunk continues bit-identically to one
process running all steps (same seed, CPU, same thread count): the data order is a pure function of
(seed, cursor), the torch RNG state is restored, and greedy evaluation consumes no randomness.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nextrl.lowrank.dense_weights import save_dense_snapshot
from nextrl.models import save_model
from nextrl.rl.advantages import compute_advantages
from nextrl.rl.chunk_layout import ChunkLayout
from nextrl.rl.importance import sequence_weights
from nextrl.rl.loss import kl_penalty, masked_aggregate, policy_loss, token_entropy, token_logprobs
from nextrl.rl.micro_batches import micro_batches, slice_weight
from nextrl.rollouts.generation import GenerationBackend, Rollouts
from nextrl.tasks import Scorer


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


def full_parameter_model(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` with every weight trainable (``rl.mode: full``); no adapter."""
    model.requires_grad_(True)
    return model


def save_snapshot(model: PeftModel | PreTrainedModel, directory: Path) -> None:
    """A snapshot of the trained weights: the PEFT adapter (fp32 safetensors), or in full-parameter mode every
    weight (:func:`nextrl.lowrank.dense_weights.save_dense_snapshot`)."""
    if isinstance(model, PeftModel):
        model.save_pretrained(directory, safe_serialization=True)
    else:
        save_dense_snapshot(model, directory)


def save_training_state(
    chunk: ChunkLayout,
    model: PeftModel | PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    optimizer: torch.optim.Optimizer,
    step: int,
    cursor: int,
) -> None:
    """Write everything an exact resume needs: the trained weights (``adapter/``, or in full-parameter mode the
    whole model as ``model/``, a HF model directory), the optimizer state, the torch RNG and the data cursor, into
    the chunk's ``state/``."""
    if isinstance(model, PeftModel):
        model.save_pretrained(chunk.adapter, safe_serialization=True)
    else:
        save_model(model, tokenizer, chunk.model)
    state = {"step": step, "cursor": cursor, "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    torch.save(state, chunk.training_state)


def load_training_state(chunk: ChunkLayout, expected_step: int) -> dict[str, Any]:
    """A chunk's saved state (keys step, cursor, optimizer, torch_rng); RLError unless it is at ``expected_step``."""
    path = chunk.training_state
    if not path.is_file():
        raise RLError(f"{path}: no training state to resume from")
    saved = torch.load(path, weights_only=False)
    if saved["step"] != expected_step:
        raise RLError(f"{chunk.state}: state is at step {saved['step']} but the chunk starts at {expected_step}")
    return saved


def grpo_step(
    model: PeftModel,
    optimizer: torch.optim.Optimizer,
    backend: GenerationBackend,
    scorer: Scorer,
    batch: pd.DataFrame,
    rl: Mapping[str, Any],
    forward: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> dict[str, float]:
    """Sample, score, and take ``updates_per_batch`` clipped policy-gradient steps; returns the step's metrics.
    Rollouts that carry the sampler's log-probs (vLLM) get the truncated importance ratio on their advantages and
    its metrics (:mod:`nextrl.rl.importance`).
    ``forward`` wraps every forward pass (bf16 autocast on CUDA, :func:`nextrl.runtime.forward_context`).

    The per-token metrics are those of the last update, as means over the batch's response tokens (each
    micro-batch weighted by its share of them): ``entropy``; ``kl``, the ``rl.kl_estimator`` estimate of
    KL(π_θ ‖ π_ref) (:func:`nextrl.rl.loss.kl_penalty`; 0.0 without a KL penalty); ``clip_fraction``, the share of
    tokens whose clipped branch of the PPO surrogate is active (:func:`nextrl.rl.loss.policy_loss`; 0.0 at the first
    update, where the ratio is 1). ``loss`` and ``grad_norm`` are the last update's too.

    The step's wall time is split three ways: ``generation_seconds`` (publishing the weights to the backend and
    sampling), ``scoring_seconds`` (the verifier's rewards, the advantages and the old and reference log-probs, with
    the importance weights) and ``update_seconds`` (the ``updates_per_batch`` gradient steps)."""
    group_size, temperature = rl["group_size"], rl["temperature"]
    began = time.perf_counter()
    backend.sync()
    rollouts = backend.generate(batch["prompt"].tolist(), group_size, rl["max_new_tokens"], temperature)
    generated = time.perf_counter()
    entries = [entry for entry in batch["entry"] for _ in range(group_size)]
    rewards = torch.tensor([scorer(text, entry) for text, entry in zip(rollouts.texts, entries)], dtype=torch.float32)
    mask = rollouts.completion_mask
    advantages = compute_advantages(rl["advantage"], rewards, group_size, scale_by_std=rl["scale_by_std"]).to(
        mask.device
    )
    completion_ids = rollouts.completion_ids
    parts = micro_batches(len(rollouts.texts), rollouts.input_ids.shape[1], rl["micro_batch_tokens"])
    whole = len(parts) == 1  # no weighting at all: bit-identical to a step without micro-batches

    def part_logprobs(rows: slice) -> torch.Tensor:
        with forward():
            return token_logprobs(completion_logits(model, rollouts.rows(rows)), completion_ids[rows], temperature)

    with torch.no_grad():
        old_logprobs = torch.cat([part_logprobs(rows) for rows in parts])
        ref_logprobs = None
        if rl["kl_coef"] > 0:
            with model.disable_adapter():
                ref_logprobs = torch.cat([part_logprobs(rows) for rows in parts])
    corrections: dict[str, float] = {}
    if rollouts.sampler_logprobs is not None:  # sampled by another engine: truncated sequence-level IS
        weights, corrections = sequence_weights(old_logprobs, rollouts.sampler_logprobs.to(mask.device), mask,
                                                rl["rollout_is_cap"])  # fmt: skip
        advantages = advantages * weights
    scored = time.perf_counter()
    model.train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for _ in range(rl["updates_per_batch"]):
        optimizer.zero_grad(set_to_none=True)
        loss, entropy, kl, clip_fraction = torch.zeros(()), 0.0, 0.0, 0.0
        for rows in parts:
            part_ref = None if ref_logprobs is None else ref_logprobs[rows]
            with forward():
                logits = completion_logits(model, rollouts.rows(rows))
                logprobs = token_logprobs(logits, completion_ids[rows], temperature)
                part_loss, stats = policy_loss(
                    logprobs, old_logprobs[rows], advantages[rows], mask[rows], rl["clip_eps"], rl["aggregation"],
                    ref_logprobs=part_ref, kl_coef=rl["kl_coef"], kl_estimator=rl["kl_estimator"],
                )  # fmt: skip
            if not torch.isfinite(part_loss):
                loss = part_loss
                break
            weight = 1.0 if whole else slice_weight(mask, rows, rl["aggregation"])
            (part_loss if whole else part_loss * weight).backward()
            loss = loss + weight * part_loss.detach()
            with torch.no_grad():  # the step's metrics, token-weighted over the batch
                share = 1.0 if whole else slice_weight(mask, rows, "token")
                entropy += share * float(masked_aggregate(token_entropy(logits, temperature), mask[rows], "token"))
                clip_fraction += share * stats["clip_fraction"]
                if part_ref is not None:
                    part_kl = kl_penalty(logprobs, part_ref, rl["kl_estimator"])
                    kl += share * float(masked_aggregate(part_kl, mask[rows], "token"))
        if not torch.isfinite(loss):
            break
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, rl["max_grad_norm"])
        optimizer.step()
    return {
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std()),
        "accuracy": float((rewards >= 1.0).float().mean()),
        "loss": float(loss.detach()),
        "kl": kl,
        "clip_fraction": clip_fraction,
        "entropy": entropy,
        "response_len": float(mask.sum(dim=1).mean()),
        "grad_norm": float(grad_norm) if torch.isfinite(loss) else float("nan"),
        "lr": optimizer.param_groups[0]["lr"],
        "tokens": int(mask.sum()),
        "generation_seconds": generated - began,
        "scoring_seconds": scored - generated,
        "update_seconds": time.perf_counter() - scored,
        **corrections,
    }
