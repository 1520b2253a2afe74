"""The one interface every extrapolator implements, and the trajectory table they all read.

An extrapolator learns (or computes in closed form) how the LoRA-trained weights of one RL round move, and predicts
the update W_{T+H} − W_T from the round's last snapshot T. NExt (arXiv 2604.11446 §3) is one; the baselines of
method.md §5 (RL-Extra, AlphaRL, RELEX) fit the same interface: AlphaRL through the optional `evaluations` table,
RL-Extra and RELEX through the triplets k > 0 that the trajectory table stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = (
    "round",
    "step",
    "module",
    "kind",
    "k",
    "sigma",
    "u",
    "v",
    "energy_ratio",
    "frob_norm",
    "horizon",
)
"""Columns of the trajectory table: one row per (step, module, kind, k) singular triplet."""

KINDS: frozenset[str] = frozenset({"global", "local", "target"})
"""global = W_t − W_round_start, local = W_t − W_{t−Δ}, target = W_{t+H} − W_t (NExt §3; method.md §3.2)."""


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
            raise ValueError(
                f"ModuleDelta rank mismatch: u {self.u.shape}, sigma {self.sigma.shape}, v {self.v.shape}"
            )

    def is_finite(self) -> bool:
        """True when every entry of u, sigma and v is finite (a NaN/inf prediction must not be written)."""
        return bool(np.isfinite(self.u).all() and np.isfinite(self.sigma).all() and np.isfinite(self.v).all())


@runtime_checkable
class Extrapolator(Protocol):
    """Predicts W_{T+H} − W_T per module from one round's trajectory table (NExt §3 step 5; method.md §5)."""

    name: str

    def fit(self, trajectory: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
        """Fit on the round's trajectory; `evaluations` (columns step, accuracy) is for accuracy-driven methods.

        Returns the fit log, one row per epoch × group (columns epoch, group, loss, lr); empty when closed-form.
        """
        ...

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        """Predicted delta W_{T+H} − W_T per module, from the state at the last snapshot T."""
        ...

    def save(self, directory: Path) -> None:
        """Write safetensors weights and a json of hyperparameters into `directory`."""
        ...

    @classmethod
    def load(cls, directory: Path) -> Extrapolator:
        """Rebuild an extrapolator written by `save`; it predicts identically."""
        ...


def validate_trajectory(trajectory: pd.DataFrame, *, require_targets: bool = True) -> None:
    """Check the trajectory table's schema and consistency; raise ValueError naming what is wrong.

    Checks: required columns present, kinds valid, one horizon, at least one target row (unless
    `require_targets` is False, e.g. when only predicting), and constant u/v lengths per module across rows.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in trajectory.columns]
    if missing:
        raise ValueError(f"trajectory is missing column(s) {missing}; required: {list(REQUIRED_COLUMNS)}")

    bad_kinds = sorted(set(trajectory["kind"].unique()) - KINDS)
    if bad_kinds:
        raise ValueError(f"trajectory column 'kind' has invalid value(s) {bad_kinds}; valid: {sorted(KINDS)}")

    horizons = sorted(int(h) for h in trajectory["horizon"].unique())
    if len(horizons) > 1:
        raise ValueError(f"trajectory column 'horizon' must be constant, found {horizons}")

    if require_targets and not (trajectory["kind"] == "target").any():
        steps = sorted(int(s) for s in trajectory["step"].unique())
        horizon = horizons[0] if horizons else None
        raise ValueError(
            "trajectory has no target rows: the round has fewer snapshots than the horizon needs "
            f"(horizon H={horizon}, snapshot steps {steps})"
        )

    for role in ("u", "v"):
        lengths = trajectory[role].map(len)
        distinct = lengths.groupby(trajectory["module"]).unique()
        for module, values in distinct.items():
            if len(values) > 1:
                raise ValueError(
                    f"module {module!r}: mismatched shapes between snapshots ({role} lengths {sorted(values)})"
                )


def _make_next(options: dict) -> Extrapolator:
    """NExt's nonlinear rank-1 predictor (arXiv 2604.11446 §3)."""
    from nextrl.next_predictor import NextPredictor  # deferred: next_predictor imports this module

    return NextPredictor(options)


EXTRAPOLATORS: dict[str, Callable[[dict], Extrapolator]] = {"next": _make_next}
"""Extrapolator factories by name; each takes its options dict."""


def make_extrapolator(name: str, options: dict) -> Extrapolator:
    """Build the extrapolator registered as `name` from its options dict."""
    try:
        factory = EXTRAPOLATORS[name]
    except KeyError:
        raise ValueError(f"unknown extrapolator {name!r}; known: {sorted(EXTRAPOLATORS)}") from None
    return factory(options)
