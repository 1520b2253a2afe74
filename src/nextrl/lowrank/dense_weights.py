"""Full-parameter snapshots on disk: the one owner of dense weight I/O for full-parameter RL (``rl.mode: full``).

A dense snapshot ``step_<t>/weights.safetensors`` holds every trained weight of the model at RL step t in fp32,
keyed by the HF parameter name (tied weights once). Deltas are taken between such files and a model directory's
safetensors in fp32 — never from bf16 merged weights (docs/method.md, "Departures from the reference code"). Module
keys follow peft's
(``base_model.model.<path>``, :func:`nextrl.lowrank.adapters.base_weight_name` inverts them) so that the trajectory, the
summary and the figures treat LoRA and full-parameter modules alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nextrl.lowrank.adapters import AdapterError, base_weight_name
from nextrl.rl.chunk_layout import snapshot_path, snapshot_steps

DENSE_WEIGHTS = "weights.safetensors"
PEFT_PREFIX = "base_model.model."

DenseWeights = dict[str, torch.Tensor]
"""Per module key, its (out × in) weight matrix in fp32."""


def save_dense_snapshot(model: torch.nn.Module, directory: Path) -> None:
    """Write every trainable weight of ``model`` as fp32 safetensors in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = {name: p.detach().float().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    save_file(weights, directory / DENSE_WEIGHTS)


def module_key(weight_name: str) -> str:
    """The peft-style module key of a linear layer's weight (``<path>.weight`` → ``base_model.model.<path>``)."""
    return PEFT_PREFIX + weight_name.removesuffix(".weight")


def _matrices(files: Iterable[Path], target_modules: Iterable[str], where: Path) -> DenseWeights:
    targets = set(target_modules)
    found: DenseWeights = {}
    for path in files:
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118  (safe_open handles are not iterable)
                parts = name.split(".")
                if len(parts) >= 2 and parts[-1] == "weight" and parts[-2] in targets:
                    tensor = handle.get_tensor(name).float()
                    if tensor.dim() == 2:
                        found[module_key(name)] = tensor
    if not found:
        raise AdapterError(f"{where}: no 2-D weight of the modules {sorted(targets)}")
    return found


def load_dense_snapshots(directory: Path, target_modules: Iterable[str]) -> dict[int, DenseWeights]:
    """The ``step_<t>/`` dense snapshots of an RL chunk, keyed by RL step t: the target modules' weights W_t."""
    targets = list(target_modules)
    snapshots = {}
    for step in snapshot_steps(directory):
        path = snapshot_path(directory, step) / DENSE_WEIGHTS
        if not path.is_file():
            raise AdapterError(f"{path.parent}: not a dense (full-parameter) snapshot, no {DENSE_WEIGHTS}")
        snapshots[step] = _matrices([path], targets, path)
    return snapshots


def load_model_matrices(model_dir: Path, modules: Iterable[str]) -> DenseWeights:
    """The weights of ``modules`` (peft-style keys) from a HF model directory's safetensors, in fp32."""
    wanted = list(modules)
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise AdapterError(f"{model_dir}: no *.safetensors weights")
    targets = {key.rsplit(".", 1)[-1] for key in wanted}
    found = _matrices(files, targets, model_dir)
    missing = [key for key in wanted if key not in found]
    if missing:
        raise AdapterError(f"{model_dir}: no weight {base_weight_name(missing[0])} (module {missing[0]})")
    return {key: found[key] for key in wanted}
