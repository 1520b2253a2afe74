"""The shared cosine (:func:`nextrl.rl.lr_schedule.cosine_decay`): by hand, and bit for bit the formulas the RL
schedule and the warm start computed before they shared it (float operation order included)."""

import math

import pytest

from nextrl.rl.lr_schedule import cosine_decay, learning_rate
from nextrl.warm_start import warm_start_lr


def test_cosine_decay_by_hand():
    assert cosine_decay(2.0, 0, 10) == 2.0
    assert cosine_decay(2.0, 5, 10) == pytest.approx(1.0)  # half-way: (1 + cos(π/2)) / 2 = 1/2
    assert cosine_decay(2.0, 10, 10) == 0.0  # 1 + cos(π) is exactly 0
    assert cosine_decay(2.0, 5, 10, floor=0.1) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert cosine_decay(2.0, 10, 10, floor=0.1) == pytest.approx(0.2)
    assert cosine_decay(2.0, 0.5, 1) == cosine_decay(2.0, 5, 10)  # a fraction over a unit duration


@pytest.mark.parametrize(("lr", "steps"), [(1.0e-3, 3000), (3.0e-4, 300), (1.0e-2, 97), (0.5, 0)])
def test_the_warm_start_cosine_is_bit_identical_to_its_former_formula(lr, steps):
    """config/config.yaml's warm start (1e-3 over 3000 steps), gpu-smoke's (3e-4 over 300) and two more: the former
    ``lr · 0.5 · (1 + cos(π · step / max(steps, 1)))``. Its angle (π·step)/steps is not π·(step/steps) in floats:
    computed that way, 712 of the 3001 learning rates of config.yaml's warm start would change in the last bit."""
    settings = {"lr": lr, "steps": steps, "schedule": "cosine"}
    for step in range(steps + 1):
        assert warm_start_lr(step, settings) == lr * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1))), step


@pytest.mark.parametrize(("warmup", "decay", "floor"), [(0, 97, 0.1), (3, 4, 0.1), (10, 300, 0.05), (1, 7, 0.0)])
def test_the_rl_cosine_is_bit_identical_to_its_former_formula(warmup, decay, floor):
    """The former RL formula ``lr · (m + (1 − m) · 0.5 · (1 + cos(π · min(1, (t − W)/D))))`` after the warm-up."""
    rl = {"lr": 2.0e-4, "lr_warmup_steps": warmup, "lr_schedule": "cosine", "lr_decay_steps": decay,
          "lr_min_ratio": floor}  # fmt: skip
    for step in range(warmup + 1, warmup + decay + 5):
        progress = min(1.0, (step - warmup) / decay)
        former = 2.0e-4 * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        assert learning_rate(rl, step) == former, step
