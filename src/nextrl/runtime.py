"""Where and in what precision the model-running stages compute (config ``runtime``; docs/gpu.md, "Training side on a
GPU"): the RL chunk, the warm start, evaluation and the HF scoring of candidates.

* ``device``: ``cpu``, ``cuda`` (an error naming the key when torch finds no CUDA device — no silent fall-back, so a
  GPU config never crawls on the CPU unnoticed) or ``auto`` (CUDA when present, else the CPU).
* ``dtype``: the frozen base weights' dtype under LoRA. LoRA parameters and so AdamW's state stay fp32 (peft upcasts
  adapters of a bf16 base, ``autocast_adapter_dtype``), log-softmax runs in fp32 (:mod:`nextrl.rl.loss`), and on
  CUDA the forward runs under bf16 autocast. Full-parameter RL keeps fp32 master weights whatever ``dtype`` says.
* ``gradient_checkpointing``: enabled (non-reentrant, ``use_cache`` off) before peft wraps the model.

The CPU default (cpu, float32, no checkpointing) changes nothing: same seed, same Parquet, bit for bit.

:func:`torch_device` is the one reading of a device setting, for ``runtime.device`` and for
``extrapolators.<method>.device`` (NExt's predictor). Importing this module loads torch but no model library
(transformers is imported where a model is loaded), so the weight-algebra stages that fit the predictor stay lean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def torch_device(device: str, key: str) -> torch.device:
    """The torch device a config value names: ``cpu``, ``cuda`` or ``auto`` (CUDA when present, else the CPU).

    ``cuda`` when torch finds no CUDA device is a RuntimeError naming the config ``key`` (``runtime.device``,
    ``extrapolators.<method>.device``): no silent fall-back to the CPU."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"{key}: cuda, but torch finds no CUDA device (torch.cuda.is_available() is False); "
            "run where CUDA is available or set it to cpu"
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_device(runtime: Mapping[str, Any]) -> torch.device:
    """The device ``runtime.device`` names (:func:`torch_device`)."""
    return torch_device(runtime["device"], "runtime.device")


def training_model(model_dir: Path, runtime: Mapping[str, Any], device: torch.device, full: bool) -> PreTrainedModel:
    """The start model for an RL chunk: in ``runtime.dtype`` (fp32 for full-parameter RL), with gradient
    checkpointing when asked, on ``device``."""
    from nextrl.models import load_model  # imported here: this module's import loads no model library

    model = load_model(model_dir, dtype=torch.float32 if full else DTYPES[runtime["dtype"]])
    if runtime["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        model.enable_input_require_grads()
    return model.to(device)


def inference_model(model_dir: Path, runtime: Mapping[str, Any] | None) -> PreTrainedModel:
    """A model for greedy evaluation: in ``runtime.dtype`` on ``runtime.device`` (fp32 on the CPU without one)."""
    from nextrl.models import load_model  # imported here: this module's import loads no model library

    if runtime is None:
        return load_model(model_dir)
    return load_model(model_dir, dtype=DTYPES[runtime["dtype"]]).to(resolve_device(runtime))


def forward_context(runtime: Mapping[str, Any], device: torch.device) -> Callable[[], AbstractContextManager[Any]]:
    """A context for the forward passes: bf16 autocast on CUDA with a bf16 base, else nothing."""
    if device.type == "cuda" and runtime["dtype"] == "bfloat16":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext
