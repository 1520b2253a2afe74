"""``alpharl``: AlphaRL, rank-1 updates extrapolated linearly in accuracy (arXiv 2510.00553; docs/method.md, "Rival
extrapolators").

AlphaRL reports that the top singular direction of the RL update moves linearly with the model's accuracy
("Rank-1 Linear Dynamics") and extrapolates it to a target accuracy. Per module:

1. a_t = σ₁u₁ of the global delta G_t (k = 0) over an early window: the round's first ``window`` snapshots (all of
   them when None). Signs come aligned along the trajectory from :mod:`nextrl.lowrank.trajectory_table` (the paper
   aligns each snapshot by cosine with its neighbour).
2. A one-component PLS regression of a_t on the measured accuracy x_t (``evaluations``). With a single scalar
   predictor the one PLS component spans the predictor's whole space, so the fit is exactly ordinary least squares
   of every coordinate of a_t on x_t: a(x) = ā + β·(x − x̄), β ∈ R^m.
3. The target accuracy x* = x_T + ``target_gain`` when given, else the accuracy trend fitted linearly in t over the
   steps used (the window and T), evaluated at T + H. x_T is the measured accuracy at the last snapshot T.
4. Invert and add: â = a(x*), ΔŴ = (â − a(x_T))·v_Tᵀ = (x* − x_T)·β v_Tᵀ (rank 1), v_T = v₁ of G_T.

Departures from the paper: the paper adds â·v₁ᵀ to the base weights (an absolute position); we add the change from
a(x_T) to a(x*) to W_T, so the jump starts where the round ended (the two agree when a(x_T) = σ₁u₁ of G_T, e.g. when
a_t is exactly affine in x_t). docs/method.md describes the regression of a_t against accuracy followed by an inversion;
if the paper's PLS instead takes a_t as predictors of accuracy, the two fits agree exactly when a_t is affine in x_t
and differ otherwise.

Fitted state (``save``/``load``): β per module (``slopes.safetensors``), the accuracies x_T and x*, and T.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from nextrl.extrapolators.base import ExtrapolatorError, empty_fit_log, parse_options, restore, write_options
from nextrl.lowrank.module_delta import ModuleDelta
from nextrl.lowrank.trajectory_table import horizon_of, last_step, snapshot_steps_of, top_triplets, validate_trajectory

SLOPES_FILE = "slopes.safetensors"


@dataclass(frozen=True)
class AlphaRLOptions:
    """``window``: how many early snapshots to regress on (None = all); ``target_gain``: x* − x_T (None = trend)."""

    window: int | None = None
    target_gain: float | None = None


def least_squares_slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """β of the ordinary least-squares fit y ≈ c + β·x (x: (N,), y: (N,) or (N, m), one β per column)."""
    centred = x - x.mean()
    return centred @ (y - y.mean(axis=0)) / (centred @ centred)


def accuracy_at(evaluations: pd.DataFrame | None, steps: Sequence[int]) -> np.ndarray:
    """The measured accuracy at each of ``steps``; ExtrapolatorError naming the steps that have none."""
    if evaluations is None:
        raise ExtrapolatorError(
            f"alpharl needs the round's evaluations (accuracy at snapshot steps {list(steps)}); got none"
        )
    absent_columns = [column for column in ("step", "accuracy") if column not in evaluations.columns]
    if absent_columns:
        raise ExtrapolatorError(f"alpharl: evaluations lack column(s) {absent_columns}")
    counts = evaluations["step"].value_counts()
    if (counts > 1).any():
        repeated = sorted(int(step) for step in counts.index[counts > 1])
        raise ExtrapolatorError(f"alpharl: evaluations hold several rows for step(s) {repeated}; pass one split")
    by_step = evaluations.set_index("step")["accuracy"]
    missing = [step for step in steps if step not in by_step.index]
    if missing:
        raise ExtrapolatorError(
            f"alpharl: evaluations lack the accuracy at snapshot step(s) {missing} (needed: {list(steps)})"
        )
    return by_step.loc[list(steps)].to_numpy(np.float64)


def rank1_positions(global_rows: pd.DataFrame, steps: Sequence[int]) -> dict[str, np.ndarray]:
    """a_t = σ₁u₁ of G_t at ``steps`` per module, as (len(steps), m) float64 arrays."""
    positions = {}
    for module, rows in global_rows.groupby(level="module", sort=True):
        by_step = rows.droplevel("module")
        missing = [step for step in steps if step not in by_step.index]
        if missing:
            raise ExtrapolatorError(f"alpharl: module {module!r} has no global triplet at step(s) {missing}")
        selected = by_step.loc[list(steps)]
        sigma = selected["sigma"].to_numpy(np.float64)[:, None]
        positions[str(module)] = sigma * np.stack(selected["u"].to_numpy()).astype(np.float64)
    return positions


def rank1_delta(slope: np.ndarray, v: np.ndarray, shift: float) -> ModuleDelta:
    """shift·β vᵀ as a rank-1 ModuleDelta (u = ±β/‖β‖, σ = |shift|·‖β‖)."""
    slope = slope.astype(np.float64)
    norm = float(np.linalg.norm(slope))
    direction = slope / norm if norm > 0 else slope
    unscaled = ModuleDelta(
        direction[:, None].astype(np.float32), np.array([norm], np.float32), v[:, None].astype(np.float32)
    )
    return unscaled.scaled(shift)


class AlphaRL:
    """``alpharl``: ΔŴ = (x* − x_T)·β v_Tᵀ with β the slope of a_t = σ₁u₁ in accuracy (module docstring)."""

    name: ClassVar[str] = "alpharl"
    Options: ClassVar[type] = AlphaRLOptions
    requires_evaluations: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        self.options: AlphaRLOptions = parse_options(AlphaRLOptions, options, self.name)
        if self.options.window is not None and self.options.window < 2:
            raise ExtrapolatorError(
                f"extrapolators.alpharl.window: a regression needs ≥ 2 snapshots, got {self.options.window}"
            )
        self.seed = seed
        self.slopes: dict[str, np.ndarray] = {}
        self.fitted_step = -1
        self.last_accuracy = float("nan")
        self.target_accuracy = float("nan")

    def fit(self, trajectory: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
        """Regress a_t on accuracy over the window and fix the target accuracy; closed form (empty fit log)."""
        validate_trajectory(trajectory, require_targets=False)
        steps = snapshot_steps_of(trajectory)
        window, last = steps[: self.options.window], steps[-1]
        used = sorted({*window, last})
        accuracy = dict(zip(used, accuracy_at(evaluations, used), strict=True))
        window_accuracy = np.array([accuracy[step] for step in window])
        if len(np.unique(window_accuracy)) < 2:
            raise ExtrapolatorError(
                f"alpharl: the accuracy over the window (steps {window}: {window_accuracy.tolist()}) takes fewer "
                "than 2 distinct values, so a_t cannot be regressed on it"
            )
        self.last_accuracy = float(accuracy[last])
        self.target_accuracy = self._target_accuracy(accuracy, last + horizon_of(trajectory))
        positions = rank1_positions(top_triplets(trajectory, "global"), window)
        self.slopes = {
            module: least_squares_slope(window_accuracy, position).astype(np.float32)
            for module, position in positions.items()
        }
        self.fitted_step = last
        return empty_fit_log()

    def _target_accuracy(self, accuracy: Mapping[int, float], jump_step: int) -> float:
        """x_T + target_gain, or the accuracy's least-squares line in t evaluated at T + H."""
        if self.options.target_gain is not None:
            return self.last_accuracy + self.options.target_gain
        steps, values = np.array(list(accuracy), np.float64), np.array(list(accuracy.values()), np.float64)
        return float(values.mean() + least_squares_slope(steps, values) * (jump_step - steps.mean()))

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        """Rank-1 ΔŴ = (x* − x_T)·β v_Tᵀ per module, v_T from the trajectory's last snapshot."""
        if not self.slopes:
            raise ExtrapolatorError("alpharl: predict called before fit (or load)")
        validate_trajectory(trajectory, require_targets=False)
        last = last_step(trajectory)
        if last != self.fitted_step:
            raise ExtrapolatorError(
                f"alpharl was fitted with the accuracy at step {self.fitted_step}; the trajectory ends at {last}"
            )
        last_global = top_triplets(trajectory, "global").xs(last, level="step")
        if set(last_global.index) != set(self.slopes):
            differing = sorted(set(last_global.index) ^ set(self.slopes))
            raise ExtrapolatorError(
                f"alpharl: modules {differing[:4]} differ between the fitted and the given trajectory"
            )
        shift = self.target_accuracy - self.last_accuracy
        return {
            module: rank1_delta(self.slopes[module], np.asarray(last_global.loc[module, "v"]), shift)
            for module in sorted(self.slopes)
        }

    def save(self, directory: Path) -> None:
        """``slopes.safetensors`` (β per module) and options.json (T, x_T and x*)."""
        if not self.slopes:
            raise ExtrapolatorError("alpharl: save called before fit")
        write_options(
            directory,
            self,
            fitted_step=self.fitted_step,
            last_accuracy=self.last_accuracy,
            target_accuracy=self.target_accuracy,
        )
        save_file(self.slopes, directory / SLOPES_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Rebuild an AlphaRL fit written by ``save``; it predicts identically."""
        directory = Path(directory)
        extrapolator, manifest = restore(cls, directory)
        extrapolator.slopes = dict(sorted(load_file(directory / SLOPES_FILE).items()))
        extrapolator.fitted_step = int(manifest["fitted_step"])
        extrapolator.last_accuracy = float(manifest["last_accuracy"])
        extrapolator.target_accuracy = float(manifest["target_accuracy"])
        return extrapolator
