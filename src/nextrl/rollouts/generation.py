"""Rollout generation behind one interface: HF ``model.generate`` here, vLLM for GPU runs
(:mod:`nextrl.rollouts.vllm_engine`).

A backend turns prompts into :class:`Rollouts`: token ids of prompts (left-padded) and completions, and the
completion mask — 1 on every generated token up to and including the first EOS, 0 after it and on padding
(the EOS is part of the action; what follows it is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Rollouts:
    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P) 1 on real prompt tokens
    completion_ids: torch.Tensor  # (B, C)
    completion_mask: torch.Tensor  # (B, C) float, 1 up to and including the first EOS
    texts: list[str]  # completions decoded up to (not including) the first EOS
    sampler_logprobs: torch.Tensor | None = None  # (B, C) the sampling engine's log-probs of the sampled tokens

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.completion_mask.long()], dim=1)

    def rows(self, selected: slice) -> Rollouts:
        """The rollouts of a slice of rows (a micro-batch), padding kept."""
        sampler = None if self.sampler_logprobs is None else self.sampler_logprobs[selected]
        return Rollouts(
            self.prompt_ids[selected], self.prompt_mask[selected], self.completion_ids[selected],
            self.completion_mask[selected], self.texts[selected], sampler,
        )  # fmt: skip


class GenerationBackend(Protocol):
    def sync(self) -> None:
        """Serve the trained model's current weights from now on (each RL step calls it before sampling)."""
        ...

    def generate(self, prompts: list[str], num_samples: int, max_new_tokens: int, temperature: float) -> Rollouts:
        """``num_samples`` completions per prompt, grouped contiguously; temperature 0 means greedy."""
        ...


def completion_mask(completion_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1.0 on tokens up to and including the first EOS of each row, 0.0 after it."""
    is_eos = (completion_ids == eos_token_id).long()
    eos_before = torch.cumsum(is_eos, dim=1) - is_eos
    return (eos_before == 0).float()


class HFGenerateBackend:
    """Sampling with ``model.generate`` on the full distribution (no top-k / top-p), in micro-batches, on the
    model's device (the rollouts' tensors stay there; texts are decoded on the CPU)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def sync(self) -> None:
        """Nothing to do: this backend samples from the trained model object itself."""

    @torch.no_grad()
    def generate(self, prompts: list[str], num_samples: int, max_new_tokens: int, temperature: float) -> Rollouts:
        expanded = [prompt for prompt in prompts for _ in range(num_samples)]
        encoded = self.tokenizer(expanded, return_tensors="pt", padding=True, add_special_tokens=False)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_k=None,
            top_p=None,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        was_training = self.model.training
        self.model.eval()
        device = self.model.device
        prompt_ids, prompt_mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
        pieces = []
        for start in range(0, len(expanded), self.batch_size):
            ids = prompt_ids[start : start + self.batch_size]
            mask = prompt_mask[start : start + self.batch_size]
            output = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
            completion = output[:, ids.shape[1] :]
            shape = (completion.shape[0], max_new_tokens - completion.shape[1])
            pad = torch.full(shape, self.tokenizer.pad_token_id, device=device)
            pieces.append(torch.cat([completion, pad], dim=1))
        self.model.train(was_training)
        completion_ids = torch.cat(pieces, dim=0)
        mask = completion_mask(completion_ids, self.tokenizer.eos_token_id)
        texts = [
            self.tokenizer.decode(row[: int(row_mask.sum())], skip_special_tokens=True)
            for row, row_mask in zip(
                completion_ids.cpu(), (mask * (completion_ids != self.tokenizer.eos_token_id)).cpu()
            )
        ]
        return Rollouts(prompt_ids, prompt_mask, completion_ids, mask, texts)
