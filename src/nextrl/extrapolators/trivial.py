"""Trivial baselines every learned extrapolator must beat on held-out targets (docs/method.md, "Held-out prediction
check").

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

from nextrl.extrapolators.base import ScaledLastDelta
from nextrl.lowrank.trajectory_table import horizon_of, snapshot_steps_of, start_step_of


@dataclass(frozen=True)
class RepeatLastOptions:
    """``repeat_last`` has no options."""


class RepeatLast(ScaledLastDelta):
    """``repeat_last``: ΔŴ = (H / Δ)·L_T, the last local step repeated over the horizon (module docstring)."""

    name: ClassVar[str] = "repeat_last"
    Options: ClassVar[type] = RepeatLastOptions
    requires_evaluations: ClassVar[bool] = False

    kind: ClassVar[str] = "local"

    def factor(self, trajectory: pd.DataFrame) -> float:
        steps = snapshot_steps_of(trajectory)
        previous = steps[-2] if len(steps) > 1 else start_step_of(trajectory)
        return horizon_of(trajectory) / (steps[-1] - previous)
