"""The RL learning rate as a pure function of the global RL step (``rl.lr_warmup_steps``, ``rl.lr_schedule``).

lr(t) for step t = 1, 2, …: linear warm-up lr·t/W over the first W steps, then ``constant`` (lr) or ``cosine``
decay from lr to lr·m over D = ``rl.lr_decay_steps`` steps after the warm-up and lr·m beyond,
lr·(m + (1 − m)·(1 + cos(π·(t − W)/D))/2) with m = ``rl.lr_min_ratio`` (Loshchilov & Hutter 2017, SGDR, eq. 5,
one cycle). Being a function of t alone — no scheduler state — it resumes exactly across chunks: a chunk sets the
optimizer's lr from the step it is at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def learning_rate(rl: Mapping[str, Any], step: int) -> float:
    """lr at global RL step ``step`` (≥ 1) under the ``rl`` settings (module docstring)."""
    peak, warmup = rl["lr"], rl["lr_warmup_steps"]
    if step <= warmup:
        return peak * step / warmup
    if rl["lr_schedule"] == "constant":
        return peak
    progress = min(1.0, (step - warmup) / rl["lr_decay_steps"])
    floor = rl["lr_min_ratio"]
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
