"""Learning rates as pure functions of the step: the RL schedule (``rl.lr_warmup_steps``, ``rl.lr_schedule``) and the
cosine decay it shares with the supervised warm start (:func:`nextrl.warm_start.warm_start_lr`).

RL: lr(t) for step t = 1, 2, …: linear warm-up lr·t/W over the first W steps, then ``constant`` (lr) or ``cosine``
decay from lr to lr·m over D = ``rl.lr_decay_steps`` steps after the warm-up and lr·m beyond,
lr·(m + (1 − m)·(1 + cos(π·(t − W)/D))/2) with m = ``rl.lr_min_ratio`` (Loshchilov & Hutter 2017, SGDR, eq. 5,
one cycle). Being a function of t alone — no scheduler state — it resumes exactly across chunks: a chunk sets the
optimizer's lr from the step it is at.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def cosine_decay(peak: float, elapsed: float, duration: float, floor: float = 0.0) -> float:
    """peak·(m + (1 − m)·(1 + cos(π·elapsed/duration))/2) with m = ``floor``: ``peak`` at elapsed = 0, peak·m at
    elapsed = duration (Loshchilov & Hutter 2017, SGDR, eq. 5, one cycle, η_min = peak·m, η_max = peak).

    The angle is computed as (π·elapsed)/duration, in that order; with ``duration`` 1, ``elapsed`` is the fraction
    of the decay already done and the angle is π·fraction exactly. ``elapsed`` is not clamped: callers clamp it."""
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * elapsed / duration)))


def learning_rate(rl: Mapping[str, Any], step: int) -> float:
    """lr at global RL step ``step`` (≥ 1) under the ``rl`` settings (module docstring)."""
    peak, warmup = rl["lr"], rl["lr_warmup_steps"]
    if step <= warmup:
        return peak * step / warmup
    if rl["lr_schedule"] == "constant":
        return peak
    # the fraction done over a unit duration: the angle is π·((t − W)/D), this schedule's float order
    progress = min(1.0, (step - warmup) / rl["lr_decay_steps"])
    return cosine_decay(peak, progress, 1, rl["lr_min_ratio"])
