"""``relex``: RELEX, a linear fit of the deltas' low-rank temporal subspace (arXiv 2605.21468; docs/method.md, "Rival
extrapolators").

Per module, the global deltas of the round's N snapshots form the rows of X (N × m·n), X[i] = vec(G_{t_i}). Their
N × N Gram matrix K = X Xᵀ = Σ_r λ_r p_r p_rᵀ gives the rank-``rank`` decomposition X ≈ Σ_r p_r V_rᵀ with temporal
coefficients c_r(t_i) = p_r[i] (unit eigenvectors) and spatial directions V_r = Xᵀ p_r = Σ_i p_r[i] G_{t_i}. Each
coefficient is fitted linearly in t by least squares over the snapshot steps (slope_r), and

    ΔŴ = Σ_r (ĉ_r(T + H) − ĉ_r(T))·V_r = Σ_i w_i G_{t_i},   w = H · Σ_r slope_r p_r.

Everything is exact from the stored triplets: ⟨G_i, G_j⟩_F = Σ_ab σ_ia σ_jb (u_ia·u_jb)(v_ia·v_jb), and ΔŴ, a
weighted sum of rank-k matrices, is built as stacked factors and decomposed by :meth:`ModuleDelta.from_factors`; no
m × n matrix is formed. No sign problem: one shared direction per component and tensor.

What it recovers exactly: affine motion G_t = G₀ + t·M gives ΔŴ = H·M for ``rank`` ≥ 2, because X = 1·vec(G₀)ᵀ +
t·vec(M)ᵀ has rank ≤ 2, so the kept coefficients span the same functions of t, each affine; ``rank`` = 1 suffices when
G₀ = 0 or G₀ ∥ M (pure linear motion G_t = t·M). A constant G₀ arises from the offset of earlier rounds' jumps.

Departures from the paper:
(a) it uses the stored top-k triplets of each G_t (k = ``jump.triplets``) instead of the full flattened delta: exact
    when every G_t has rank ≤ k, the best rank-k approximation of each snapshot otherwise;
(b) the paper sets W(t*) = W₀ + ĉ(t*)·V; relative to W_T we add the fitted coefficients' change ĉ(T + H) − ĉ(T), so
    the fit's residual at T (ĉ(T)·V − G_T: truncation plus line-fit error) is not part of the jump; the two agree
    when the fit is exact at T;
(c) components at the numerical noise level, √λ_r ≤ √N·eps(float32)·√λ_1 (the rule of :mod:`nextrl.lowrank.svd`), are
    dropped rather than extrapolated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from nextrl.extrapolators.base import ExtrapolatorError, OptionsOnly
from nextrl.lowrank.module_delta import ModuleDelta
from nextrl.lowrank.trajectory_table import deltas_at, horizon_of, snapshot_steps_of, validate_trajectory

FLOAT32_EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class RelexOptions:
    """``rank``: how many temporal components r to extrapolate (the paper's rank-1 subspace by default)."""

    rank: int = 1


def frobenius_gram(deltas: Sequence[ModuleDelta]) -> np.ndarray:
    """K[i, j] = ⟨G_i, G_j⟩_F = Σ_ab σ_ia σ_jb (u_ia·u_jb)(v_ia·v_jb), in float64, from each G_i's triplets."""
    left = np.concatenate([delta.u.astype(np.float64) * delta.sigma for delta in deltas], axis=1)
    right = np.concatenate([delta.v.astype(np.float64) for delta in deltas], axis=1)
    owner = np.repeat(np.arange(len(deltas)), [delta.sigma.size for delta in deltas])
    membership = (owner == np.arange(len(deltas))[:, None]).astype(np.float64)
    return membership @ ((left.T @ left) * (right.T @ right)) @ membership.T


def temporal_components(gram: np.ndarray, rank: int) -> np.ndarray:
    """(N, r) unit eigenvectors p_r of the ``rank`` largest eigenvalues of the Gram above the noise level."""
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    top = np.argsort(eigenvalues)[::-1][:rank]
    noise = len(gram) * FLOAT32_EPS**2 * max(float(eigenvalues.max()), 0.0)
    return eigenvectors[:, top[eigenvalues[top] > noise]]


def step_weights(components: np.ndarray, steps: np.ndarray, horizon: int) -> np.ndarray:
    """w with ΔŴ = Σ_i w_i G_{t_i}: H times each coefficient's least-squares slope in t, summed over components."""
    centred = steps - steps.mean()
    slopes = components.T @ centred / (centred @ centred)
    return horizon * components @ slopes


def weighted_sum(deltas: Sequence[ModuleDelta], weights: np.ndarray) -> ModuleDelta:
    """Σ_i w_i G_i exactly, as the SVD of the stacked factors [w_i σ_i u_i …] [v_iᵀ; …]."""
    left = np.concatenate(
        [weight * delta.u * delta.sigma for delta, weight in zip(deltas, weights, strict=True)], axis=1
    )
    right = np.concatenate([delta.v.T for delta in deltas], axis=0)
    return ModuleDelta.from_factors(left, right)


class Relex(OptionsOnly):
    """``relex``: ΔŴ from the linear trend of the top-``rank`` temporal components of G_t (module docstring)."""

    name: ClassVar[str] = "relex"
    Options: ClassVar[type] = RelexOptions
    requires_evaluations: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        if self.options.rank < 1:
            raise ExtrapolatorError(f"extrapolators.relex.rank: must be ≥ 1, got {self.options.rank}")

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        validate_trajectory(trajectory, require_targets=False)
        steps = snapshot_steps_of(trajectory)
        if len(steps) < 2:
            raise ExtrapolatorError(f"relex: a linear fit in t needs at least 2 snapshots; the round has steps {steps}")
        history = {step: deltas_at(trajectory, "global", step) for step in steps}
        horizon = horizon_of(trajectory)
        predictions = {}
        for module in sorted(history[steps[-1]]):
            missing = [step for step in steps if module not in history[step]]
            if missing:
                raise ExtrapolatorError(f"relex: module {module!r} has no global triplets at step(s) {missing}")
            deltas = [history[step][module] for step in steps]
            components = temporal_components(frobenius_gram(deltas), self.options.rank)
            weights = step_weights(components, np.asarray(steps, np.float64), horizon)
            predictions[module] = weighted_sum(deltas, weights)
        return predictions
