"""One round's snapshots as ``rl.mode`` wrote them (LoRA adapters or dense weights), loaded with what the round
started from, and their trajectory table (:mod:`nextrl.lowrank.trajectory_table`) with the experiment's ``jump``
settings: what the trajectory and heldout stages read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from nextrl.experiment import round_start_step
from nextrl.lowrank.adapters import Adapter, load_adapter, load_offset, load_snapshots
from nextrl.lowrank.dense_weights import DenseWeights, load_dense_snapshots, load_model_matrices
from nextrl.lowrank.trajectory_table import TrajectoryError, dense_trajectory_table, difference, trajectory_table


def round_trajectory(
    config: Mapping[str, Any],
    snapshots: Mapping[int, Adapter],
    start_adapter: Path | None,
    offset: Path | None,
    round_index: int,
) -> pa.Table:
    """:func:`trajectory_table` of round ``round_index`` with the experiment's ``jump`` settings, reading the start
    adapter (None: a fresh LoRA) and the start model's offset file (None: the base model itself)."""
    return trajectory_table(
        snapshots,
        start=load_adapter(start_adapter) if start_adapter is not None else None,
        offset=load_offset(offset) if offset is not None else None,
        round_index=round_index,
        start_step=round_start_step(config, round_index),
        horizon=config["jump"]["horizon"],
        triplets=config["jump"]["triplets"],
    )


def load_dense_round(
    config: Mapping[str, Any], snapshots: Path, base_model: Path, start_model: Path
) -> tuple[dict[int, DenseWeights], DenseWeights, DenseWeights]:
    """A full-parameter round's dense snapshots over the modules of ``lora.target_modules`` (the module types a LoRA
    run tracks, so that E1 compares like with like), and the same modules of the round's start model and of the
    experiment's base model (model directories)."""
    weights = load_dense_snapshots(snapshots, config["lora"]["target_modules"])
    modules = sorted(next(iter(weights.values())))
    return weights, load_model_matrices(start_model, modules), load_model_matrices(base_model, modules)


def dense_round_trajectory(
    config: Mapping[str, Any],
    snapshots: Mapping[int, DenseWeights],
    start: DenseWeights,
    base: DenseWeights,
    round_index: int,
) -> pa.Table:
    """:func:`dense_trajectory_table` of round ``round_index`` with the experiment's ``jump`` settings."""
    return dense_trajectory_table(
        snapshots,
        start=start,
        base=base,
        round_index=round_index,
        start_step=round_start_step(config, round_index),
        horizon=config["jump"]["horizon"],
        triplets=config["jump"]["triplets"],
    )


@dataclass(frozen=True)
class RoundSnapshots:
    """One round's snapshots, LoRA or dense, behind what the trajectory and heldout stages need of them."""

    snapshots: Mapping[int, Any]
    """Per RL step, the snapshot (an :class:`Adapter` or dense weights)."""
    table: Callable[[Mapping[int, Any]], pa.Table]
    """The trajectory table of some of the snapshots (all of them, or the round as if it had ended earlier)."""
    delta: Callable[[int, int, str], tuple[torch.Tensor, torch.Tensor]]
    """W_new − W_old of one module between two snapshot steps, as factors (a dense delta as (matrix, identity))."""


def load_round(
    config: Mapping[str, Any],
    round_index: int,
    snapshots: Path,
    start_adapter: Path | None,
    offset: Path | None,
    base_model: Path | None,
    start_weights: Path | None,
) -> RoundSnapshots:
    """A round's snapshots as ``rl.mode`` wrote them: LoRA (with the adapter the round resumed and the start model's
    offset) or dense (with the experiment's base model and the round's start model)."""
    if config["rl"]["mode"] == "lora":
        adapters = load_snapshots(snapshots)
        return RoundSnapshots(
            adapters,
            lambda chosen: round_trajectory(config, chosen, start_adapter, offset, round_index),
            lambda new, old, module: difference(adapters[new], adapters[old], module),
        )
    if base_model is None or start_weights is None:
        raise TrajectoryError("rl.mode full: dense snapshots need --base-model and --start-weights")
    dense, start, base = load_dense_round(config, snapshots, base_model, start_weights)

    def dense_delta(new: int, old: int, module: str) -> tuple[torch.Tensor, torch.Tensor]:
        matrix = dense[new][module] - dense[old][module]
        return matrix, torch.eye(matrix.shape[1])

    return RoundSnapshots(
        dense, lambda chosen: dense_round_trajectory(config, chosen, start, base, round_index), dense_delta
    )
