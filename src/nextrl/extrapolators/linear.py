"""``linear``: RL-Extra weight extrapolation (arXiv 2601.04537, "Not All Steps are Informative"; docs/method.md, "Rival
extrapolators").

RL-Extra extends the round's own straight line: W(t*) = W_start + ((t* − t₀)/(T − t₀))·(W_T − W_start), with t₀ the
step of W_start (the trajectory's ``start_step``) and t* = T + H. Relative to the last snapshot this is

    ΔŴ = W(T + H) − W_T = (H / (T − t₀))·(W_T − W_start),

read exactly from the trajectory's ``round`` rows (every triplet of W_T − W_start above its numerical rank), so the
prediction is exact as a LoRA. The candidates are

    W_T + α·ΔŴ = W_start + (1 + α·H/(T − t₀))·(W_T − W_start),

the "(1 + α′)" form of RL-Extra and ExPO (arXiv 2404.16792) with α′ = α·H/(T − t₀); α = (T − t₀)/H is α′ = 1.
Only LoRA-trained modules move; RL-Extra's "norms copied" holds since untouched tensors keep their values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from nextrl.extrapolators.base import ExtrapolatorError, ScaledLastDelta
from nextrl.lowrank.trajectory_table import horizon_of, last_step, start_step_of


@dataclass(frozen=True)
class LinearOptions:
    """RL-Extra has no options: the horizon and the α grid are the jump's (``jump.horizon``, ``jump.alphas``)."""


class Linear(ScaledLastDelta):
    """``linear``: ΔŴ = (H / (T − t₀))·(W_T − W_start) (module docstring)."""

    name: ClassVar[str] = "linear"
    Options: ClassVar[type] = LinearOptions
    requires_evaluations: ClassVar[bool] = False

    kind: ClassVar[str] = "round"

    def factor(self, trajectory: pd.DataFrame) -> float:
        last, start = last_step(trajectory), start_step_of(trajectory)
        if last <= start:
            raise ExtrapolatorError(
                f"linear: the last snapshot step {last} is not after the round's start step {start}"
            )
        return horizon_of(trajectory) / (last - start)
