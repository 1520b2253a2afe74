"""The trajectory stage: top singular triplets of each LoRA module's global, local and target deltas per snapshot.

For a round whose adapter snapshots are W_t = W_start + s·B_t A_t (NExt arXiv 2604.11446 §3, step 2):

* global  G_t = W_t − W_start                       = s·(B_t A_t − B_0 A_0)   ("position")
* local   L_t = W_t − W_{t−Δ}                       = s·(B_t A_t − B_{t−Δ} A_{t−Δ})   ("velocity"; G_t at the first snapshot)
* target  Y_t = W_{t+H} − W_t, only where t + H ≤ the last snapshot step

B_0 A_0 is the adapter the round starts from (zero for a fresh LoRA, whose B is initialised to 0). Every triplet
comes exactly from the factors in fp32 (:mod:`nextrl.lowrank`: QR of the stacked factors and an SVD of the small
core) — weights are never merged and no dense SVD is taken. Signs follow :func:`nextrl.lowrank.canonicalize_signs`
(largest-|entry| of each u positive), so u, σ, v are consistent across snapshots.

Table schema (``trajectory.parquet``, one row per (module, step, kind, k)), see TRAJECTORY_SCHEMA:
round int32, step int64 (global RL step), module str, kind str (global|local|target), k int16 (0 = top),
sigma float64, u list<float32> (length out_features), v list<float32> (length in_features),
energy_ratio float64 (E1 = σ1/Σσ of the delta, NExt §2), frob_norm float64, horizon int64 (H in steps).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file

from nextrl.artifacts import atomic_path
from nextrl.lowrank import Triplets, lora_difference_triplets, lora_triplets

TRAJECTORY_SCHEMA = pa.schema(
    [
        ("round", pa.int32()),
        ("step", pa.int64()),
        ("module", pa.string()),
        ("kind", pa.string()),
        ("k", pa.int16()),
        ("sigma", pa.float64()),
        ("u", pa.list_(pa.float32())),
        ("v", pa.list_(pa.float32())),
        ("energy_ratio", pa.float64()),
        ("frob_norm", pa.float64()),
        ("horizon", pa.int64()),
    ]
)
_SNAPSHOT = re.compile(r"^step_(\d+)$")
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")


class TrajectoryError(ValueError):
    """Snapshots that cannot form a trajectory; the message names the snapshot or module."""


@dataclass(frozen=True)
class Adapter:
    """LoRA factors per module (B: out×r, A: r×in, fp32) and the scale s of W = W_0 + s·B A."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float


def load_adapter(directory: Path) -> Adapter:
    """Read a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)."""
    config_path, weights_path = directory / "adapter_config.json", directory / "adapter_model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise TrajectoryError(f"{directory} is not a PEFT adapter directory (adapter_config.json / adapter_model.safetensors)")
    config = json.loads(config_path.read_text())
    rank, alpha = config["r"], config["lora_alpha"]
    scale = alpha / rank**0.5 if config.get("use_rslora") else alpha / rank
    pieces: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(weights_path).items():
        match = _LORA_KEY.match(key)
        if match:
            pieces.setdefault(match["module"], {})[match["factor"]] = tensor.float()
    factors = {}
    for module, parts in sorted(pieces.items()):
        if set(parts) != {"A", "B"}:
            raise TrajectoryError(f"{weights_path}: module {module} lacks its lora_A or lora_B weight")
        factors[module] = (parts["B"], parts["A"])
    return Adapter(factors, scale)


def snapshot_steps(snapshots_dir: Path) -> list[int]:
    steps = sorted(int(m[1]) for path in snapshots_dir.iterdir() if (m := _SNAPSHOT.match(path.name)))
    if not steps:
        raise TrajectoryError(f"{snapshots_dir} holds no step_<t> snapshots")
    return steps


def check_compatible(reference: Adapter, other: Adapter, where: str) -> None:
    """Same LoRA targets, shapes and scale, else :class:`TrajectoryError` naming ``where``."""
    if set(reference.factors) != set(other.factors):
        differing = sorted(set(reference.factors) ^ set(other.factors))
        raise TrajectoryError(f"{where}: mismatched LoRA targets between snapshots (modules {differing[:4]})")
    for module, (b, a) in other.factors.items():
        ref_b, ref_a = reference.factors[module]
        if b.shape[0] != ref_b.shape[0] or a.shape[1] != ref_a.shape[1]:
            raise TrajectoryError(
                f"{where}: module {module} has shape {b.shape[0]}×{a.shape[1]}, expected {ref_b.shape[0]}×{ref_a.shape[1]}"
            )
    if abs(reference.scale - other.scale) > 1e-12 * max(1.0, abs(reference.scale)):
        raise TrajectoryError(f"{where}: LoRA scale {other.scale} differs from {reference.scale}")


def delta_triplets(new: Adapter, old: Adapter | None, module: str, k: int) -> Triplets:
    """Triplets of s·(B_new A_new − B_old A_old), or of s·B_new A_new when ``old`` is None (zero start)."""
    b_new, a_new = new.factors[module]
    if old is None:
        return lora_triplets(b_new, a_new, new.scale, k)
    b_old, a_old = old.factors[module]
    return lora_difference_triplets(b_new, a_new, b_old, a_old, new.scale, k)


def extract_trajectory(
    snapshots_dir: Path,
    output: Path,
    round_index: int,
    horizon: int,
    triplets: int,
    start_adapter: Path | None = None,
) -> int:
    """Write ``trajectory.parquet`` for one round's snapshots; returns the number of rows."""
    steps = snapshot_steps(snapshots_dir)
    adapters = {step: load_adapter(snapshots_dir / f"step_{step}") for step in steps}
    reference = adapters[steps[0]]
    for step, adapter in adapters.items():
        check_compatible(reference, adapter, str(snapshots_dir / f"step_{step}"))
    start = load_adapter(start_adapter) if start_adapter is not None else None
    if start is not None:
        check_compatible(reference, start, str(start_adapter))
    if not any(step + horizon <= steps[-1] for step in steps):
        raise TrajectoryError(
            f"next.horizon: H={horizon} steps needs snapshots beyond the first by H, but {snapshots_dir} has "
            f"snapshot steps {steps}: the round has fewer snapshots than the horizon needs"
        )
    columns: dict[str, list] = {name: [] for name in TRAJECTORY_SCHEMA.names}

    def add(step: int, module: str, kind: str, found: Triplets) -> None:
        for index in range(triplets):
            columns["round"].append(round_index)
            columns["step"].append(step)
            columns["module"].append(module)
            columns["kind"].append(kind)
            columns["k"].append(index)
            columns["sigma"].append(float(found.sigma[index]))
            columns["u"].append(found.u[:, index].tolist())
            columns["v"].append(found.v[:, index].tolist())
            columns["energy_ratio"].append(found.energy_ratio)
            columns["frob_norm"].append(found.frobenius_norm)
            columns["horizon"].append(horizon)

    for module in reference.factors:
        for position, step in enumerate(steps):
            current = adapters[step]
            add(step, module, "global", delta_triplets(current, start, module, triplets))
            previous = adapters[steps[position - 1]] if position else start
            add(step, module, "local", delta_triplets(current, previous, module, triplets))
            if step + horizon in adapters:
                add(step, module, "target", delta_triplets(adapters[step + horizon], current, module, triplets))
    table = pa.table(columns, schema=TRAJECTORY_SCHEMA)
    with atomic_path(output) as staging:
        pq.write_table(table, staging)
    return table.num_rows
