"""Trivial baselines every learned extrapolator must beat on held-out targets (method.md §8).

``repeat_last`` repeats the round's last local step for the whole horizon: constant velocity,

    ΔŴ = (H / Δ)·L_T,   L_T = W_T − W_{T−Δ},

with Δ = T − the previous snapshot step (T − ``start_step`` when the round has one snapshot, since L_T is then
W_T − W_start). L_T comes from every stored triplet of the ``local`` kind at T, so the prediction is exact when
rank(L_T) ≤ ``jump.triplets`` (a LoRA local step has rank ≤ 2r) and the best rank-k approximation otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from nextrl.extrapolators.base import (
    ModuleDelta,
    OptionsOnly,
    deltas_at,
    horizon_of,
    snapshot_steps,
    start_step_of,
    validate_trajectory,
)


@dataclass(frozen=True)
class RepeatLastOptions:
    """``repeat_last`` has no options."""


class RepeatLast(OptionsOnly):
    """``repeat_last``: ΔŴ = (H / Δ)·L_T, the last local step repeated over the horizon (module docstring)."""

    name: ClassVar[str] = "repeat_last"
    Options: ClassVar[type] = RepeatLastOptions
    requires_evaluations: ClassVar[bool] = False

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        validate_trajectory(trajectory, require_targets=False)
        steps = snapshot_steps(trajectory)
        last = steps[-1]
        previous = steps[-2] if len(steps) > 1 else start_step_of(trajectory)
        factor = horizon_of(trajectory) / (last - previous)
        return {module: delta.scaled(factor) for module, delta in deltas_at(trajectory, "local", last).items()}
