"""The trajectory table: top singular triplets of each LoRA module's deltas per snapshot — schema and extraction.

For a round whose snapshots are W_t = W_base + O + s·B_t A_t (NExt arXiv 2604.11446 §3 step 2; O the round start's
low-rank offset from the experiment's base model, :mod:`nextrl.lowrank.adapters`; B_s A_s the adapter the round starts
from, zero for a fresh LoRA):

* global  G_t = W_t − W_base           = O + s·B_t A_t              ("position", from the experiment's base model)
* local   L_t = W_t − W_{t−Δ}          = s·(B_t A_t − B_{t−Δ} A_{t−Δ}); at the first snapshot W_{t−Δ} = W_start
* target  Y_t = W_{t+H} − W_t          only where t + H ≤ the last snapshot step
* round   W_T − W_start                = s·(B_T A_T − B_s A_s), at the last snapshot T only, with every triplet above
  the numerical rank (not only ``triplets``), so that scaling the round's own delta (RL-Extra, the probe) is exact.

A full-parameter round (``rl.mode: full``, :mod:`nextrl.lowrank.dense_weights`) has the same kinds from dense deltas
W_t − W_base etc. of the ``lora.target_modules`` weights (:func:`dense_trajectory_table`).

For LoRA, every triplet comes exactly from the factors in fp32 (:mod:`nextrl.lowrank.svd`: QR of the stacked factors and
an SVD of the small core); weights are never merged and no dense SVD is taken. Signs are consistent along the trajectory
(docs/method.md, "Departures from the reference code"): each snapshot's triplets are aligned with the previous
snapshot's of the same module and kind
(:func:`nextrl.lowrank.svd.align_signs`); only the first snapshot uses the stateless rule.

Queries (used by every extrapolator): :func:`validate_trajectory`, :func:`horizon_of`, :func:`start_step_of`,
:func:`last_step`, :func:`snapshot_steps_of`, :func:`top_triplets`, :func:`deltas_at`. Loading a round's snapshots
and building its table with the experiment's settings: :mod:`nextrl.lowrank.round_snapshots`.

Table schema (``trajectory.parquet``, one row per (module, step, kind, k)), TRAJECTORY_SCHEMA:
round int32, step int64 (global RL step), module str, kind str (KINDS), k int16 (0 = top), sigma float64,
u list<float32> (length out_features), v list<float32> (length in_features), energy_ratio float64
(E1 = σ1/Σσ of the delta, NExt §2), frob_norm float64, horizon int64 (H in steps), start_step int64 (the round's
first RL step minus one: the step of W_start).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from nextrl.lowrank.adapters import (
    Adapter,
    AdapterError,
    Factors,
    concat_factors,
)  # fmt: skip
from nextrl.lowrank.dense_weights import DenseWeights
from nextrl.lowrank.module_delta import ModuleDelta
from nextrl.lowrank.svd import Triplets, align_signs, dense_triplets, factored_triplets

KINDS = ("global", "local", "target", "round")
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
        ("start_step", pa.int64()),
    ]
)


class TrajectoryError(ValueError):
    """Snapshots that cannot form a trajectory; the message names the snapshot or module."""


def check_compatible(reference: Adapter, other: Adapter, where: str) -> None:
    """Same LoRA targets, shapes, rank and scale, else :class:`TrajectoryError` naming ``where``."""
    if set(reference.factors) != set(other.factors):
        differing = sorted(set(reference.factors) ^ set(other.factors))
        raise TrajectoryError(f"{where}: mismatched LoRA targets between snapshots (modules {differing[:4]})")
    for module, (b, a) in other.factors.items():
        ref_b, ref_a = reference.factors[module]
        if b.shape[0] != ref_b.shape[0] or a.shape[1] != ref_a.shape[1]:
            raise TrajectoryError(
                f"{where}: module {module} has shape {b.shape[0]}×{a.shape[1]}, "
                f"expected {ref_b.shape[0]}×{ref_a.shape[1]}"
            )
        if b.shape[1] != ref_b.shape[1]:
            raise TrajectoryError(f"{where}: module {module} has LoRA rank {b.shape[1]}, expected {ref_b.shape[1]}")
    if abs(reference.scale - other.scale) > 1e-12 * max(1.0, abs(reference.scale)):
        raise TrajectoryError(f"{where}: LoRA scale {other.scale} differs from {reference.scale}")


def difference(new: Adapter, old: Adapter | None, module: str) -> tuple[torch.Tensor, torch.Tensor]:
    """s·(B_new A_new − B_old A_old) of one module as stacked factors (s·B_new A_new when ``old`` is None)."""
    b_new, a_new = new.factors[module]
    if old is None:
        return new.scale * b_new, a_new
    b_old, a_old = old.factors[module]
    return torch.cat([new.scale * b_new, -old.scale * b_old], dim=1), torch.cat([a_new, a_old], dim=0)


def position(adapter: Adapter, offset: Factors | None, module: str) -> tuple[torch.Tensor, torch.Tensor]:
    """O + s·B A of one module (the global delta from the experiment's base model) as stacked factors."""
    if offset is None or module not in offset:
        return difference(adapter, None, module)
    return concat_factors({module: offset[module]}, {module: difference(adapter, None, module)})[module]


Delta = tuple[torch.Tensor, torch.Tensor] | torch.Tensor
"""A weight delta: stacked low-rank factors (left, right) whose product it is, or a dense (out × in) matrix."""


def delta_triplets(delta: Delta, count: int) -> Triplets:
    """Top triplets of a delta: exactly from its factors, or by :func:`nextrl.lowrank.svd.dense_triplets`."""
    return factored_triplets(*delta, count) if isinstance(delta, tuple) else dense_triplets(delta, count)


def _check_horizon(steps: list[int], horizon: int) -> None:
    if not steps:
        raise TrajectoryError("the round has no snapshots")
    if not any(step + horizon in steps for step in steps):
        raise TrajectoryError(
            f"jump.horizon: H={horizon} steps needs two snapshots H steps apart, but the round has snapshot "
            f"steps {steps}: fewer snapshots than the horizon needs"
        )


def _table(
    modules: list[str],
    steps: list[int],
    position: Callable[[int, str], Delta],
    difference: Callable[[int, int | None, str], Delta],
    round_count: Callable[[Delta], int],
    *,
    round_index: int,
    start_step: int,
    horizon: int,
    triplets: int,
) -> pa.Table:
    """The rows of every kind (module docstring) from ``position(t, module)`` = W_t − W_base and
    ``difference(t, t', module)`` = W_t − W_t' (t' = None: the round's start); ``round_count`` triplets of the
    round's delta are kept."""
    columns: dict[str, list] = {name: [] for name in TRAJECTORY_SCHEMA.names}
    previous: dict[tuple[str, str], Triplets] = {}

    def add(step: int, module: str, kind: str, delta: Delta, count: int) -> None:
        found = delta_triplets(delta, count)
        if (module, kind) in previous:
            last = previous[(module, kind)]
            width = min(count, last.u.shape[1])
            u, v = found.u.clone(), found.v.clone()
            u[:, :width], v[:, :width] = align_signs(u[:, :width], v[:, :width], last.u[:, :width], last.v[:, :width])
            found = dataclasses.replace(found, u=u, v=v)
        previous[(module, kind)] = found
        for k in range(count):
            columns["round"].append(round_index)
            columns["step"].append(step)
            columns["module"].append(module)
            columns["kind"].append(kind)
            columns["k"].append(k)
            columns["sigma"].append(float(found.sigma[k]))
            columns["u"].append(found.u[:, k].tolist())
            columns["v"].append(found.v[:, k].tolist())
            columns["energy_ratio"].append(found.energy_ratio)
            columns["frob_norm"].append(found.frobenius_norm)
            columns["horizon"].append(horizon)
            columns["start_step"].append(start_step)

    for module in modules:
        for index, step in enumerate(steps):
            add(step, module, "global", position(step, module), triplets)
            add(step, module, "local", difference(step, steps[index - 1] if index else None, module), triplets)
            if step + horizon in steps:
                add(step, module, "target", difference(step + horizon, step, module), triplets)
        whole_round = difference(steps[-1], None, module)
        add(steps[-1], module, "round", whole_round, round_count(whole_round))
    return pa.table(columns, schema=TRAJECTORY_SCHEMA)


def trajectory_table(
    snapshots: Mapping[int, Adapter],
    start: Adapter | None,
    offset: Factors | None,
    round_index: int,
    start_step: int,
    horizon: int,
    triplets: int,
) -> pa.Table:
    """The trajectory table of one round (module docstring) from its snapshot adapters, keyed by RL step."""
    steps = sorted(snapshots)
    _check_horizon(steps, horizon)
    reference = snapshots[steps[0]]
    for step in steps:
        check_compatible(reference, snapshots[step], f"snapshot step_{step}")
    if start is not None:
        check_compatible(reference, start, "the round's start adapter")
    if offset is not None and set(offset) - set(reference.factors):
        raise AdapterError(f"offset modules {sorted(set(offset) - set(reference.factors))[:3]} are not LoRA-trained")

    def lora_difference(new: int, old: int | None, module: str) -> Delta:
        return difference(snapshots[new], start if old is None else snapshots[old], module)

    def numerical_rank(whole_round: Delta) -> int:
        return max(1, len(factored_triplets(*whole_round, whole_round[0].shape[1]).spectrum))

    return _table(
        list(reference.factors), steps, lambda step, module: position(snapshots[step], offset, module),
        lora_difference, numerical_rank,
        round_index=round_index, start_step=start_step, horizon=horizon, triplets=triplets,
    )  # fmt: skip


def dense_trajectory_table(
    snapshots: Mapping[int, DenseWeights],
    start: DenseWeights,
    base: DenseWeights,
    round_index: int,
    start_step: int,
    horizon: int,
    triplets: int,
) -> pa.Table:
    """The trajectory table of one full-parameter round from dense snapshots W_t, the round's start weights and
    the experiment's base weights (same module keys): the same kinds and formulas as the LoRA table, with dense
    deltas (:func:`nextrl.lowrank.svd.dense_triplets`). The ``round`` kind keeps ``triplets`` triplets, not the
    numerical rank: a dense delta's rank is min(m, n), so RL-Extra (``linear``) on a full-parameter round scales the
    top ``jump.triplets`` triplets of W_T − W_start, not the whole delta as it does on a LoRA round."""
    steps = sorted(snapshots)
    _check_horizon(steps, horizon)
    modules = sorted(snapshots[steps[0]])
    for where, weights in [*((f"snapshot step_{step}", snapshots[step]) for step in steps),
                           ("the round's start model", start), ("the base model", base)]:  # fmt: skip
        for module in modules:
            if module not in weights or weights[module].shape != snapshots[steps[0]][module].shape:
                raise TrajectoryError(f"{where}: module {module} is missing or has another shape")

    def dense_difference(new: int, old: int | None, module: str) -> Delta:
        return snapshots[new][module] - (start if old is None else snapshots[old])[module]

    return _table(
        modules, steps, lambda step, module: snapshots[step][module] - base[module], dense_difference,
        lambda _: triplets, round_index=round_index, start_step=start_step, horizon=horizon, triplets=triplets,
    )  # fmt: skip


def validate_trajectory(trajectory: pd.DataFrame, *, require_targets: bool = True) -> None:
    """Check the trajectory table against its schema; raise TrajectoryError naming what is wrong.

    Checks: the schema's columns present, kinds valid, one horizon and one start step, at least one target row
    (unless ``require_targets`` is False, e.g. when only predicting), constant u/v lengths per module.
    """
    missing = [column for column in TRAJECTORY_SCHEMA.names if column not in trajectory.columns]
    if missing:
        raise TrajectoryError(f"trajectory is missing column(s) {missing}; required: {TRAJECTORY_SCHEMA.names}")
    bad_kinds = sorted(set(trajectory["kind"].unique()) - set(KINDS))
    if bad_kinds:
        raise TrajectoryError(f"trajectory column 'kind' has invalid value(s) {bad_kinds}; valid: {sorted(KINDS)}")
    for column in ("horizon", "start_step"):
        values = sorted(int(value) for value in trajectory[column].unique())
        if len(values) != 1:
            raise TrajectoryError(f"trajectory column {column!r} must hold one value, found {values}")
    if require_targets and not (trajectory["kind"] == "target").any():
        steps = sorted(int(s) for s in trajectory["step"].unique())
        raise TrajectoryError(
            "trajectory has no target rows: the round has fewer snapshots than the horizon needs "
            f"(horizon H={horizon_of(trajectory)}, snapshot steps {steps})"
        )
    for role in ("u", "v"):
        distinct = trajectory[role].map(len).groupby(trajectory["module"]).unique()
        for module, values in distinct.items():
            if len(values) > 1:
                raise TrajectoryError(
                    f"module {module!r}: mismatched shapes between snapshots ({role} lengths {sorted(values)})"
                )


def horizon_of(trajectory: pd.DataFrame) -> int:
    return int(trajectory["horizon"].iloc[0])


def start_step_of(trajectory: pd.DataFrame) -> int:
    return int(trajectory["start_step"].iloc[0])


def last_step(trajectory: pd.DataFrame) -> int:
    return int(trajectory.loc[trajectory["kind"] == "global", "step"].max())


def snapshot_steps_of(trajectory: pd.DataFrame) -> list[int]:
    return sorted(int(step) for step in trajectory.loc[trajectory["kind"] == "global", "step"].unique())


def top_triplets(trajectory: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The k = 0 triplets of one kind (columns sigma, u, v), indexed by (module, step), sorted."""
    selected = (trajectory["kind"] == kind) & (trajectory["k"] == 0)
    rows = trajectory.loc[selected, ["module", "step", "sigma", "u", "v"]].set_index(["module", "step"]).sort_index()
    duplicated = rows.index[rows.index.duplicated()]
    if len(duplicated):
        raise TrajectoryError(f"{kind} triplet k=0 appears more than once for (module, step) {duplicated[0]}")
    return rows


def deltas_at(trajectory: pd.DataFrame, kind: str, step: int) -> dict[str, ModuleDelta]:
    """Every stored triplet (all k) of one kind at one step, per module, as ModuleDelta (zero triplets dropped)."""
    rows = trajectory[(trajectory["kind"] == kind) & (trajectory["step"] == step)].sort_values(["module", "k"])
    if rows.empty:
        raise TrajectoryError(f"trajectory has no {kind!r} rows at step {step}")
    deltas = {}
    for module, group in rows.groupby("module", sort=True):
        kept = group[group["sigma"] > 0] if (group["sigma"] > 0).any() else group.head(1)
        deltas[str(module)] = ModuleDelta(
            u=np.stack(kept["u"].to_numpy(), axis=1).astype(np.float32),
            sigma=kept["sigma"].to_numpy(np.float32),
            v=np.stack(kept["v"].to_numpy(), axis=1).astype(np.float32),
        )
    return deltas
