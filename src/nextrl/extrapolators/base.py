"""What every extrapolator shares: the predicted delta, the interface, option parsing and trajectory access.

An extrapolator learns (or computes in closed form) how the weights of one RL round move and predicts the update
W_{T+H} − W_T from the round's last snapshot T, H = ``jump.horizon`` steps ahead (NExt, arXiv 2604.11446 §3 step 5;
the rivals of method.md §5 fit the same interface). Candidates are then W_T + α·ΔŴ for every α of ``jump.alphas``.
Every method reads the round's trajectory table (schema owned by :mod:`nextrl.lowrank.trajectory_table`);
accuracy-driven methods
also read ``evaluations`` (columns step, accuracy: the round's validation accuracy per snapshot).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd
import torch

from nextrl.lowrank.svd import factored_triplets
from nextrl.lowrank.trajectory_table import KINDS, TRAJECTORY_SCHEMA
from nextrl.type_hints import matches_type

OPTIONS_FILE = "options.json"


class ExtrapolatorError(ValueError):
    """An extrapolator cannot fit or predict on what it was given; the message names the module, step or option."""


# eq=False: the generated __eq__/__hash__ would compare numpy arrays, which has no single truth value.
@dataclass(frozen=True, eq=False)
class ModuleDelta:
    """A predicted weight delta for one module, rank k: Σ_i sigma[i] u[:, i] v[:, i]ᵀ (u, v unit columns)."""

    u: np.ndarray  # (m, k) float32
    sigma: np.ndarray  # (k,) float32
    v: np.ndarray  # (n, k) float32

    def __post_init__(self) -> None:
        if self.u.ndim != 2 or self.v.ndim != 2 or self.sigma.ndim != 1:
            raise ValueError(
                f"ModuleDelta needs u (m, k), sigma (k,), v (n, k); got shapes u {self.u.shape}, "
                f"sigma {self.sigma.shape}, v {self.v.shape}"
            )
        if not self.u.shape[1] == self.sigma.shape[0] == self.v.shape[1]:
            raise ValueError(f"ModuleDelta rank mismatch: u {self.u.shape}, sigma {self.sigma.shape}, v {self.v.shape}")

    @classmethod
    def from_factors(cls, left: np.ndarray, right: np.ndarray) -> ModuleDelta:
        """The exact SVD of ``left @ right`` (m×q times q×n) from the factors, every non-zero triplet kept."""
        left_t, right_t = (
            torch.from_numpy(np.asarray(left, np.float32)),
            torch.from_numpy(np.asarray(right, np.float32)),
        )
        found = factored_triplets(left_t, right_t, max(1, left_t.shape[1]))
        rank = max(1, len(found.spectrum))
        return cls(found.u[:, :rank].numpy(), found.sigma[:rank].numpy(), found.v[:, :rank].numpy())

    def scaled(self, factor: float) -> ModuleDelta:
        """factor · ΔŴ; a negative factor flips u (σ stays ≥ 0)."""
        sign = np.float32(-1.0 if factor < 0 else 1.0)
        # in float64 whatever the factor's type, so a numpy and a Python scalar give the same bits
        return ModuleDelta(
            sign * self.u, (abs(float(factor)) * self.sigma.astype(np.float64)).astype(np.float32), self.v
        )

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ·u, vᵀ) as fp32 tensors: ΔŴ = left @ right, the form :mod:`nextrl.lowrank.jumps` applies."""
        left = torch.from_numpy(np.ascontiguousarray(self.u * self.sigma, dtype=np.float32))
        return left, torch.from_numpy(np.ascontiguousarray(self.v.T, dtype=np.float32))

    def dense(self) -> np.ndarray:
        """The (m, n) matrix (for tests and small held-out comparisons)."""
        return (self.u * self.sigma) @ self.v.T

    def is_finite(self) -> bool:
        """True when every entry of u, sigma and v is finite (a NaN/inf prediction must not be written)."""
        return bool(np.isfinite(self.u).all() and np.isfinite(self.sigma).all() and np.isfinite(self.v).all())


@runtime_checkable
class Extrapolator(Protocol):
    """Predicts W_{T+H} − W_T per module from one round's trajectory (NExt §3 step 5; method.md §5).

    ``name`` is the registry key (what ``arms`` and ``extrapolators`` in the config name); ``Options`` the frozen
    dataclass of its options, whose fields mirror the method's block in the config schema; ``requires_evaluations``
    whether ``fit`` needs the per-snapshot accuracies.
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    requires_evaluations: ClassVar[bool]

    def __init__(self, options: Mapping[str, Any] | None = None, seed: int = 0) -> None: ...

    def fit(self, trajectory: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
        """Fit on the round's trajectory; returns the fit log (columns epoch, group, loss, lr; empty if closed form)."""
        ...

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        """Predicted delta W_{T+H} − W_T per trained module, from the state at the last snapshot T."""
        ...

    def save(self, directory: Path) -> None:
        """Write what ``load`` needs into ``directory`` (options.json plus any safetensors)."""
        ...

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Rebuild an extrapolator written by ``save``; it predicts identically."""
        ...


def parse_options(options_class: type, options: Mapping[str, Any] | None, method: str) -> Any:
    """``options_class(**options)`` with unknown keys and wrong types refused, naming ``extrapolators.<method>.<key>``.

    The config schema rejects the same values before anything runs; this guards direct (library) use.
    """
    known = {field.name: field for field in dataclasses.fields(options_class)}
    given = dict(options or {})
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ExtrapolatorError(f"extrapolators.{method}: unknown option(s) {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(options_class)
    for key, value in given.items():
        if not matches_type(value, hints[key]):
            raise ExtrapolatorError(f"extrapolators.{method}.{key}: {value!r} is not of type {hints[key]}")
    return options_class(**given)


class OptionsOnly:
    """Save/load for extrapolators whose whole fitted state is their options (closed-form methods)."""

    name: ClassVar[str]
    Options: ClassVar[type]
    requires_evaluations: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        self.options = parse_options(self.Options, options, self.name)
        self.seed = seed

    def fit(self, trajectory: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
        validate_trajectory(trajectory, require_targets=False)
        return empty_fit_log()

    def save(self, directory: Path) -> None:
        write_options(directory, self)

    @classmethod
    def load(cls, directory: Path) -> Self:
        return restore(cls, directory)[0]


class ScaledLastDelta(OptionsOnly):
    """Closed-form extrapolators whose ΔŴ is one stored delta kind at the last snapshot T times a factor."""

    kind: ClassVar[str]

    def factor(self, trajectory: pd.DataFrame) -> float:
        raise NotImplementedError

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        validate_trajectory(trajectory, require_targets=False)
        factor = self.factor(trajectory)
        return {
            module: delta.scaled(factor)
            for module, delta in deltas_at(trajectory, self.kind, last_step(trajectory)).items()
        }


def write_options(directory: Path, extrapolator: Any, **extra: Any) -> None:
    """``options.json``: the extrapolator's registry name, options and seed, plus what its ``load`` needs."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "extrapolator": extrapolator.name,
        "options": dataclasses.asdict(extrapolator.options),
        "seed": extrapolator.seed,
        **extra,
    }
    (directory / OPTIONS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))


def restore(method_class: type, directory: Path) -> tuple[Any, dict[str, Any]]:
    """A new ``method_class`` with the options and seed saved in ``directory``, and the saved manifest."""
    manifest = read_manifest(directory)
    if manifest["extrapolator"] != method_class.name:
        raise ExtrapolatorError(
            f"{Path(directory) / OPTIONS_FILE} holds extrapolator {manifest['extrapolator']!r}, "
            f"not {method_class.name!r}"
        )
    return method_class(manifest["options"], manifest["seed"]), manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / OPTIONS_FILE
    if not path.is_file():
        raise ExtrapolatorError(f"{directory} holds no fitted extrapolator ({OPTIONS_FILE} missing)")
    return json.loads(path.read_text())


def empty_fit_log() -> pd.DataFrame:
    return pd.DataFrame({"epoch": pd.Series(dtype="int64"), "group": pd.Series(dtype="str"),
                         "loss": pd.Series(dtype="float64"), "lr": pd.Series(dtype="float64")})  # fmt: skip


def validate_trajectory(trajectory: pd.DataFrame, *, require_targets: bool = True) -> None:
    """Check the trajectory table against its schema; raise ExtrapolatorError naming what is wrong.

    Checks: the schema's columns present, kinds valid, one horizon and one start step, at least one target row
    (unless ``require_targets`` is False, e.g. when only predicting), constant u/v lengths per module.
    """
    missing = [column for column in TRAJECTORY_SCHEMA.names if column not in trajectory.columns]
    if missing:
        raise ExtrapolatorError(f"trajectory is missing column(s) {missing}; required: {TRAJECTORY_SCHEMA.names}")
    bad_kinds = sorted(set(trajectory["kind"].unique()) - set(KINDS))
    if bad_kinds:
        raise ExtrapolatorError(f"trajectory column 'kind' has invalid value(s) {bad_kinds}; valid: {sorted(KINDS)}")
    for column in ("horizon", "start_step"):
        values = sorted(int(value) for value in trajectory[column].unique())
        if len(values) != 1:
            raise ExtrapolatorError(f"trajectory column {column!r} must hold one value, found {values}")
    if require_targets and not (trajectory["kind"] == "target").any():
        steps = sorted(int(s) for s in trajectory["step"].unique())
        raise ExtrapolatorError(
            "trajectory has no target rows: the round has fewer snapshots than the horizon needs "
            f"(horizon H={horizon_of(trajectory)}, snapshot steps {steps})"
        )
    for role in ("u", "v"):
        distinct = trajectory[role].map(len).groupby(trajectory["module"]).unique()
        for module, values in distinct.items():
            if len(values) > 1:
                raise ExtrapolatorError(
                    f"module {module!r}: mismatched shapes between snapshots ({role} lengths {sorted(values)})"
                )


def horizon_of(trajectory: pd.DataFrame) -> int:
    return int(trajectory["horizon"].iloc[0])


def start_step_of(trajectory: pd.DataFrame) -> int:
    return int(trajectory["start_step"].iloc[0])


def last_step(trajectory: pd.DataFrame) -> int:
    return int(trajectory.loc[trajectory["kind"] == "global", "step"].max())


def snapshot_steps(trajectory: pd.DataFrame) -> list[int]:
    return sorted(int(step) for step in trajectory.loc[trajectory["kind"] == "global", "step"].unique())


def top_triplets(trajectory: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The k = 0 triplets of one kind (columns sigma, u, v), indexed by (module, step), sorted."""
    selected = (trajectory["kind"] == kind) & (trajectory["k"] == 0)
    rows = trajectory.loc[selected, ["module", "step", "sigma", "u", "v"]].set_index(["module", "step"]).sort_index()
    duplicated = rows.index[rows.index.duplicated()]
    if len(duplicated):
        raise ExtrapolatorError(f"{kind} triplet k=0 appears more than once for (module, step) {duplicated[0]}")
    return rows


def deltas_at(trajectory: pd.DataFrame, kind: str, step: int) -> dict[str, ModuleDelta]:
    """Every stored triplet (all k) of one kind at one step, per module, as ModuleDelta (zero triplets dropped)."""
    rows = trajectory[(trajectory["kind"] == kind) & (trajectory["step"] == step)].sort_values(["module", "k"])
    if rows.empty:
        raise ExtrapolatorError(f"trajectory has no {kind!r} rows at step {step}")
    deltas = {}
    for module, group in rows.groupby("module", sort=True):
        kept = group[group["sigma"] > 0] if (group["sigma"] > 0).any() else group.head(1)
        deltas[str(module)] = ModuleDelta(
            u=np.stack(kept["u"].to_numpy(), axis=1).astype(np.float32),
            sigma=kept["sigma"].to_numpy(np.float32),
            v=np.stack(kept["v"].to_numpy(), axis=1).astype(np.float32),
        )
    return deltas
