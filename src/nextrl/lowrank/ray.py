"""The extrapolability probe: accuracy along a round's own ray W_start + k·(W_T − W_start) (docs/method.md, "The
extrapolability probe").

If accuracy still rises beyond k = 1, scaling the round's own update helps and a jump can pay off on this run; if it
peaks at k = 1 (as on the tiny default at LoRA lr 1e-3), no extrapolation along it will. The probe costs one greedy
evaluation per k and needs no fitted extrapolator. Everything is exact from the LoRA factors: with W_start =
W_model + s·B_s A_s (B_s A_s = 0 for a fresh LoRA) and W_T = W_model + s·B_T A_T, the ray point is the scale-1 LoRA
[(1 − k)·s·B_s, k·s·B_T] [A_s; A_T] over the round's start model.

``probe.parquet`` schema: PROBE_COLUMNS, one row per k; :func:`nextrl.analysis.comparison.probe_table` summarises them.
"""

from __future__ import annotations

import torch

from nextrl.lowrank.adapters import Adapter, Factors

PROBE_KS = (0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0)
PROBE_COLUMNS = ("arm", "seed", "round", "k", "accuracy", "n_items")


def ray_factors(end: Adapter, start: Adapter | None, k: float) -> Factors:
    """Per module, scale-1 LoRA factors of W_start + k·(W_T − W_start) − W_model (module docstring)."""
    factors = {}
    for module, (b_end, a_end) in end.factors.items():
        if start is None:
            factors[module] = (k * end.scale * b_end, a_end)
        else:
            b_start, a_start = start.factors[module]
            left = torch.cat([(1 - k) * start.scale * b_start, k * end.scale * b_end], dim=1)
            factors[module] = (left, torch.cat([a_start, a_end], dim=0))
    return factors
