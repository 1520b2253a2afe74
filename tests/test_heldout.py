"""The held-out comparison, against hand-computed values."""

import math

import pytest
import torch

from nextrl.lowrank.prediction_error import compare, frobenius_inner


def rank1(u, v, sigma=1.0):
    u, v = torch.tensor(u, dtype=torch.float32), torch.tensor(v, dtype=torch.float32)
    return (sigma * u[:, None] / u.norm(), (v / v.norm())[None, :])


def test_frobenius_inner_from_factors_equals_the_dense_product():
    first = (torch.arange(6.0).reshape(3, 2), torch.arange(8.0).reshape(2, 4))
    second = (torch.ones(3, 1), torch.tensor([[1.0, -1.0, 2.0, 0.0]]))
    assert frobenius_inner(first, second) == pytest.approx(
        float(((first[0] @ first[1]) * (second[0] @ second[1])).sum())
    )


def test_perfect_reversed_and_orthogonal_predictions():
    truth = rank1([1, 0, 0], [0, 1], sigma=2.0)
    assert compare(truth, truth) == pytest.approx({"rank1_cosine": 1.0, "relative_error": 0.0, "sigma_ratio": 1.0})
    reversed_half = rank1([-1, 0, 0], [0, 1], sigma=1.0)  # −½ Y: error ‖−1.5 Y‖ / ‖Y‖ = 1.5
    assert compare(reversed_half, truth) == pytest.approx(
        {"rank1_cosine": -1.0, "relative_error": 1.5, "sigma_ratio": 0.5}
    )
    orthogonal = rank1([0, 1, 0], [0, 1], sigma=2.0)  # ‖P − Y‖² = 4 + 4, ‖Y‖² = 4
    scores = compare(orthogonal, truth)
    assert scores["rank1_cosine"] == pytest.approx(0.0, abs=1e-7)
    assert scores["relative_error"] == pytest.approx(math.sqrt(2))


def test_tilted_prediction():
    truth = rank1([1, 0], [1, 0], sigma=1.0)
    tilted = rank1([1, 1], [1, 0], sigma=1.0)  # cos 45° in u, aligned in v
    scores = compare(tilted, truth)
    assert scores["rank1_cosine"] == pytest.approx(2**-0.5, rel=1e-6)
    # ‖P − Y‖² = ‖P‖² + ‖Y‖² − 2⟨P, Y⟩ = 1 + 1 − 2·cos 45°
    assert scores["relative_error"] == pytest.approx(math.sqrt(2 - 2 * 2**-0.5), rel=1e-6)
