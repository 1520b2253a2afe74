"""LoRA factors on disk: the one owner of PEFT adapter I/O, the LoRA scale and low-rank weight offsets.

A PEFT adapter directory holds ``adapter_config.json`` (r, lora_alpha, use_rslora, …) and
``adapter_model.safetensors`` (``<module>.lora_A.weight`` r×in, ``<module>.lora_B.weight`` out×r); peft applies
W = W₀ + s·B A with s = lora_alpha / r, or lora_alpha / √r with rsLoRA (peft ``LoraLayer.update_layer``).

A low-rank offset is what a start model adds to the experiment's base model on the LoRA-trained modules, kept
as exact factors (``<module>.left`` out×q, ``<module>.right`` q×in, fp32, W_start = W_base + left @ right) so that
global deltas stay exact from factors across jumps (docs/method.md, "Continuation after a jump: carry-over vs fresh").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nextrl.rl.chunk_layout import snapshot_path, snapshot_steps

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""Per module (left out×q, right q×in): the matrix left @ right."""


class AdapterError(ValueError):
    """A LoRA adapter or offset file that cannot be used; the message names the path and module."""


def lora_scale(adapter_config: Mapping[str, Any]) -> float:
    """s of W = W₀ + s·B A: lora_alpha / r, or lora_alpha / √r with use_rslora (as peft computes it)."""
    rank, alpha = adapter_config["r"], adapter_config["lora_alpha"]
    return alpha / rank**0.5 if adapter_config.get("use_rslora") else alpha / rank


@dataclass(frozen=True)
class Adapter:
    """LoRA factors per module (B: out×r, A: r×in, fp32), the scale s of W = W₀ + s·B A, and the peft config."""

    factors: Factors
    scale: float
    config: dict[str, Any]

    def scaled_factors(self) -> Factors:
        """Per module (s·B, A): the adapter's delta as plain factors."""
        return {module: (self.scale * b, a) for module, (b, a) in self.factors.items()}


def is_adapter_dir(directory: Path) -> bool:
    """Whether ``directory`` holds a PEFT adapter (adapter_config.json and adapter_model.safetensors)."""
    return (directory / ADAPTER_CONFIG).is_file() and (directory / ADAPTER_WEIGHTS).is_file()


def load_adapter(directory: Path) -> Adapter:
    """Read a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)."""
    config_path, weights_path = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    if not is_adapter_dir(directory):
        raise AdapterError(f"{directory} is not a PEFT adapter directory ({ADAPTER_CONFIG} / {ADAPTER_WEIGHTS})")
    config = json.loads(config_path.read_text())
    pieces: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(weights_path).items():
        match = _LORA_KEY.match(key)
        if match:
            pieces.setdefault(match["module"], {})[match["factor"]] = tensor.float()
    factors = {}
    for module, parts in sorted(pieces.items()):
        if set(parts) != {"A", "B"}:
            raise AdapterError(f"{weights_path}: module {module} lacks its lora_A or lora_B weight")
        factors[module] = (parts["B"], parts["A"])
    return Adapter(factors, lora_scale(config), config)


def load_snapshots(directory: Path) -> dict[int, Adapter]:
    """The ``step_<t>/`` adapters of an RL chunk's snapshot directory, keyed by RL step t."""
    return {step: load_adapter(snapshot_path(directory, step)) for step in snapshot_steps(directory)}


def lora_config_for(factors: Factors) -> dict[str, Any]:
    """A minimal peft LoRA config targeting the module types of ``factors`` (peft fills every other key with its
    default); for adapters that no LoRA training wrote, e.g. a jump over a full-parameter model."""
    targets = sorted({module.rsplit(".", 1)[-1] for module in factors})
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "target_modules": targets,
        "lora_dropout": 0.0,
        "bias": "none",
    }


def save_scale_one_adapter(factors: Factors, template_config: Mapping[str, Any], directory: Path) -> None:
    """Write ``left @ right`` per module as a PEFT adapter of scale 1 (lora_alpha = r = the factors' rank)."""
    ranks = {left.shape[1] for left, _ in factors.values()}
    if len(ranks) != 1:
        raise AdapterError(f"{directory}: every module needs the same rank, got {sorted(ranks)}")
    rank = ranks.pop()
    weights = {}
    for module, (left, right) in factors.items():
        weights[f"{module}.lora_B.weight"] = left.float().contiguous()
        weights[f"{module}.lora_A.weight"] = right.float().contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    save_file(weights, directory / ADAPTER_WEIGHTS)
    config = {**template_config, "r": rank, "lora_alpha": rank, "use_rslora": False}
    (directory / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))


def concat_factors(*parts: Factors) -> Factors:
    """Σ of several low-rank matrices per module, as stacked factors ([L₁, L₂, …], [R₁; R₂; …]); exact."""
    modules = sorted({module for part in parts for module in part})
    stacked = {}
    for module in modules:
        present = [part[module] for part in parts if module in part]
        stacked[module] = (
            torch.cat([left for left, _ in present], dim=1),
            torch.cat([right for _, right in present], dim=0),
        )
    return stacked


def save_offset(offset: Factors, path: Path) -> None:
    tensors = {}
    for module, (left, right) in offset.items():
        tensors[f"{module}.left"] = left.float().contiguous()
        tensors[f"{module}.right"] = right.float().contiguous()
    save_file(tensors, path)


def load_offset(path: Path) -> Factors:
    if not path.is_file():
        raise AdapterError(f"{path}: low-rank offset file missing")
    tensors = load_file(path)
    modules = sorted({key.rsplit(".", 1)[0] for key in tensors})
    missing = [module for module in modules if f"{module}.left" not in tensors or f"{module}.right" not in tensors]
    if missing:
        raise AdapterError(f"{path}: module {missing[0]} lacks its left or right factor")
    return {module: (tensors[f"{module}.left"], tensors[f"{module}.right"]) for module in modules}


def base_weight_name(module: str) -> str:
    """The base model's parameter that a PEFT module key adapts (``base_model.model.<path>`` → ``<path>.weight``)."""
    return module.removeprefix("base_model.model.") + ".weight"
