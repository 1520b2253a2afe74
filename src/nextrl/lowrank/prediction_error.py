"""Held-out comparison of a predicted update with the true one, exactly from low-rank factors.

Inside a round with snapshots up to T, an extrapolator fitted on the trajectory up to t* = T − H (so its training
targets end at t*) predicts Y_{t*} = W_T − W_{t*}, which was measured but not seen (docs/method.md, "Held-out
prediction check"). Per module this reports

* ``rank1_cosine`` = (û₁·u₁)(v̂₁·v₁): the signed cosine of the top triplets of prediction and truth (1 = same
  direction, −1 = reversed, 0 = unrelated);
* ``relative_error`` = ‖ΔŴ − Y‖_F / ‖Y‖_F over the full-rank truth (predicting zero scores 1);
* ``sigma_ratio`` = σ̂₁ / σ₁.

Frobenius products of P = L_p R_p and Y = L_y R_y never form the m×n matrices: ⟨P, Y⟩_F = Σ (L_pᵀL_y) ⊙ (R_p R_yᵀ).
"""

from __future__ import annotations

import math

import torch

from nextrl.lowrank.svd import factored_triplets

HELDOUT_COLUMNS = ("method", "module", "rank1_cosine", "relative_error", "sigma_ratio", "error")
"""error: why a method could not fit or predict on this round (its row then has no module and NaN scores)."""

LowRank = tuple[torch.Tensor, torch.Tensor]


def frobenius_inner(first: LowRank, second: LowRank) -> float:
    """⟨L₁R₁, L₂R₂⟩_F from the factors, in float64."""
    (left_1, right_1), (left_2, right_2) = first, second
    return float(((left_1.double().T @ left_2.double()) * (right_1.double() @ right_2.double().T)).sum())


def compare(prediction: LowRank, truth: LowRank) -> dict[str, float]:
    """rank1_cosine, relative_error and sigma_ratio of one module (module docstring)."""
    predicted_top, true_top = factored_triplets(*prediction, 1), factored_triplets(*truth, 1)
    cosine = float(predicted_top.u[:, 0] @ true_top.u[:, 0]) * float(predicted_top.v[:, 0] @ true_top.v[:, 0])
    truth_norm_squared = frobenius_inner(truth, truth)
    error_squared = (
        frobenius_inner(prediction, prediction) - 2 * frobenius_inner(prediction, truth) + truth_norm_squared
    )
    true_sigma = float(true_top.sigma[0])
    return {
        "rank1_cosine": cosine,
        "relative_error": math.sqrt(max(error_squared, 0.0) / truth_norm_squared)
        if truth_norm_squared > 0
        else math.nan,
        "sigma_ratio": float(predicted_top.sigma[0]) / true_sigma if true_sigma > 0 else math.nan,
    }
