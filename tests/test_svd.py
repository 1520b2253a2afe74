"""Tests for nextrl.lowrank.svd: factored LoRA-delta SVD (NExt arXiv 2604.11446 §3) vs a dense SVD.

The factors are built as the trajectory builds them (:func:`nextrl.lowrank.trajectory_table.difference`): the global
delta s·B A as (s·B, A), the local delta s·(B_new A_new − B_old A_old) as (s·[B_new, −B_old], [A_new; A_old]).
"""

from __future__ import annotations

import math

import pytest
import torch

from nextrl.lowrank.adapters import Adapter
from nextrl.lowrank.svd import (
    LowRankError,
    Triplets,
    canonicalize_signs,
    dense_triplets,
    factored_triplets,
)
from nextrl.lowrank.trajectory_table import delta_triplets, difference

TOLERANCE = 1e-5
M, N, RANK, SCALE = 256, 192, 8, 2.0


def random_lora(m: int, n: int, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random LoRA factors B (m×rank) and A (rank×n) with well-separated singular values."""
    generator = torch.Generator().manual_seed(seed)
    b = torch.randn(m, rank, generator=generator) / math.sqrt(m)
    a = torch.randn(rank, n, generator=generator) / math.sqrt(n)
    return b, a


def lora_factors(b: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The global delta s·B A as the factors (s·B, A)."""
    return SCALE * b, a


def stacked_difference(
    b_new: torch.Tensor, a_new: torch.Tensor, b_old: torch.Tensor, a_old: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The local delta s·(B_new A_new − B_old A_old) as the stacked factors (s·[B_new, −B_old], [A_new; A_old])."""
    return torch.cat([SCALE * b_new, -SCALE * b_old], dim=1), torch.cat([a_new, a_old], dim=0)


def assert_triplets_close(actual: Triplets, expected: Triplets) -> None:
    """Compare every triplet, the spectrum and the derived scalars at TOLERANCE."""
    assert actual.u.dtype == actual.sigma.dtype == actual.v.dtype == torch.float32
    torch.testing.assert_close(actual.sigma, expected.sigma, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(actual.u, expected.u, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(actual.v, expected.v, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(actual.spectrum, expected.spectrum, atol=TOLERANCE, rtol=0)
    assert actual.energy_ratio == pytest.approx(expected.energy_ratio, abs=TOLERANCE)
    assert actual.frobenius_norm == pytest.approx(expected.frobenius_norm, abs=TOLERANCE)


@pytest.mark.parametrize("k", [1, 3, RANK])
def test_factored_triplets_match_dense_svd(k: int) -> None:
    b, a = random_lora(M, N, RANK, seed=0)
    delta = SCALE * b @ a
    actual = factored_triplets(*lora_factors(b, a), k)
    expected = dense_triplets(delta, k)

    assert actual.u.shape == (M, k) and actual.v.shape == (N, k) and actual.sigma.shape == (k,)
    assert_triplets_close(actual, expected)
    full_dense_sigma = torch.linalg.svdvals(delta.double()).float()
    assert actual.spectrum.shape == (RANK,)
    torch.testing.assert_close(actual.spectrum, full_dense_sigma[:RANK], atol=TOLERANCE, rtol=0)
    assert actual.frobenius_norm == pytest.approx(float(torch.linalg.norm(delta.double())), rel=TOLERANCE)
    assert actual.energy_ratio == pytest.approx(
        float(full_dense_sigma[0] / full_dense_sigma[:RANK].sum()), abs=TOLERANCE
    )
    orthonormality = actual.u.T @ actual.u
    torch.testing.assert_close(orthonormality, torch.eye(k), atol=TOLERANCE, rtol=0)


def test_energy_ratio_is_plain_not_squared() -> None:
    u = torch.linalg.qr(torch.randn(10, 3, generator=torch.Generator().manual_seed(1)))[0]
    v = torch.linalg.qr(torch.randn(7, 3, generator=torch.Generator().manual_seed(2)))[0]
    sigma = torch.tensor([3.0, 2.0, 1.0])
    triplets = factored_triplets(u * sigma, v.T, k=3)
    assert triplets.energy_ratio == pytest.approx(3.0 / 6.0, abs=TOLERANCE)
    assert triplets.frobenius_norm == pytest.approx(math.sqrt(14.0), abs=TOLERANCE)


@pytest.mark.parametrize("old_rank", [RANK, 4])
def test_difference_triplets_match_dense_svd(old_rank: int) -> None:
    b_new, a_new = random_lora(M, N, RANK, seed=3)
    b_old, a_old = random_lora(M, N, old_rank, seed=4)
    delta = SCALE * (b_new @ a_new - b_old @ a_old)
    k = RANK + old_rank
    actual = factored_triplets(*stacked_difference(b_new, a_new, b_old, a_old), k)
    expected = dense_triplets(delta, k)

    assert actual.spectrum.shape == (RANK + old_rank,)
    assert_triplets_close(actual, expected)
    assert actual.frobenius_norm == pytest.approx(float(torch.linalg.norm(delta.double())), rel=TOLERANCE)


def test_trajectory_difference_of_two_adapters_matches_dense_svd() -> None:
    b_new, a_new = random_lora(M, N, RANK, seed=3)
    b_old, a_old = random_lora(M, N, RANK, seed=4)
    new, old = Adapter({"m": (b_new, a_new)}, SCALE, {}), Adapter({"m": (b_old, a_old)}, SCALE, {})
    delta = SCALE * (b_new @ a_new - b_old @ a_old)
    for factors, expected in ((difference(new, old, "m"), delta), (difference(new, None, "m"), SCALE * b_new @ a_new)):
        assert_triplets_close(delta_triplets(factors, 2 * RANK), dense_triplets(expected, 2 * RANK))


def test_difference_of_identical_checkpoints_is_zero() -> None:
    b, a = random_lora(M, N, RANK, seed=5)
    triplets = factored_triplets(*stacked_difference(b, a, b, a), k=2)
    assert triplets.spectrum.numel() == 0
    assert torch.count_nonzero(triplets.sigma) == 0
    assert triplets.energy_ratio == 0.0
    assert not any(bool(tensor.isnan().any()) for tensor in (triplets.u, triplets.sigma, triplets.v))


def test_same_product_from_other_factors_gives_same_triplets() -> None:
    b, a = random_lora(M, N, RANK, seed=6)
    reference = factored_triplets(b, a, RANK)
    generator = torch.Generator().manual_seed(7)
    rotation = torch.linalg.qr(torch.randn(RANK, RANK, generator=generator))[0]

    for left, right in [(-b, -a), (b @ rotation, rotation.T @ a)]:
        assert_triplets_close(factored_triplets(left, right, RANK), reference)


def test_sign_convention_flips_a_negative_dominant_entry() -> None:
    generator = torch.Generator().manual_seed(8)
    u_raw = torch.randn(M, generator=generator)
    u_raw[17] = -10.0  # largest |entry| is negative: the convention must flip this pair
    u_raw = u_raw / u_raw.norm()
    v_raw = torch.randn(N, generator=generator)
    v_raw = v_raw / v_raw.norm()
    delta_left, delta_right = 5.0 * u_raw[:, None], v_raw[None, :]

    for triplets in (
        factored_triplets(delta_left, delta_right, 1),
        dense_triplets(delta_left @ delta_right, 1),
    ):
        torch.testing.assert_close(triplets.u[:, 0], -u_raw, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(triplets.v[:, 0], -v_raw, atol=TOLERANCE, rtol=0)
        assert float(triplets.sigma[0]) == pytest.approx(5.0, rel=TOLERANCE)


def test_dominant_entry_of_every_u_column_is_positive() -> None:
    b, a = random_lora(M, N, RANK, seed=9)
    triplets = factored_triplets(*lora_factors(b, a), RANK)
    dominant = triplets.u.gather(0, triplets.u.abs().argmax(dim=0, keepdim=True))
    assert bool((dominant > 0).all())


def test_canonicalize_signs_is_stateless_and_breaks_ties_by_first_index() -> None:
    u = torch.tensor([[0.6, -0.8], [-0.6, 0.6], [0.0, 0.0]])
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    canonical_u, canonical_v = canonicalize_signs(u, v)
    # Column 0: tie |0.6| = |-0.6|, the first index is positive: kept.
    # Column 1: -0.8 dominates: flipped.
    torch.testing.assert_close(canonical_u, torch.tensor([[0.6, 0.8], [-0.6, -0.6], [0.0, 0.0]]))
    torch.testing.assert_close(canonical_v, torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
    flipped_u, flipped_v = canonicalize_signs(-u, -v)
    assert torch.equal(flipped_u, canonical_u) and torch.equal(flipped_v, canonical_v)


def test_zero_delta_gives_zeros_without_nan() -> None:
    _, a = random_lora(M, N, RANK, seed=10)
    b = torch.zeros(M, RANK)  # LoRA initialisation
    for triplets in (factored_triplets(*lora_factors(b, a), 2), dense_triplets(torch.zeros(M, N), 2)):
        for tensor in (triplets.u, triplets.sigma, triplets.v):
            assert not bool(tensor.isnan().any())
        assert torch.count_nonzero(triplets.sigma) == 0
        assert triplets.energy_ratio == 0.0
        assert triplets.frobenius_norm == 0.0
        assert triplets.u.shape == (M, 2) and triplets.v.shape == (N, 2)


def test_k_above_rank_pads_with_zero_triplets() -> None:
    b, a = random_lora(M, N, 2, seed=11)
    triplets = factored_triplets(*lora_factors(b, a), k=5)
    assert triplets.sigma.shape == (5,)
    assert triplets.u.shape == (M, 5) and triplets.v.shape == (N, 5)
    assert triplets.spectrum.shape == (2,)
    assert bool((triplets.sigma[:2] > 0).all())
    assert torch.count_nonzero(triplets.sigma[2:]) == 0
    assert torch.count_nonzero(triplets.u[:, 2:]) == 0
    assert torch.count_nonzero(triplets.v[:, 2:]) == 0
    torch.testing.assert_close(triplets.dense(), SCALE * b @ a, atol=TOLERANCE, rtol=0)


def test_dense_reconstructs_a_rank_one_delta() -> None:
    generator = torch.Generator().manual_seed(12)
    column, row = torch.randn(M, 1, generator=generator), torch.randn(1, N, generator=generator)
    triplets = factored_triplets(*lora_factors(column, row), k=1)
    torch.testing.assert_close(triplets.dense(), SCALE * column @ row, atol=TOLERANCE, rtol=1e-5)
    assert triplets.energy_ratio == pytest.approx(1.0)


def test_inputs_are_cast_to_float32() -> None:
    b, a = random_lora(M, N, RANK, seed=13)
    triplets = factored_triplets(SCALE * b.double(), a.to(torch.bfloat16), k=2)
    assert triplets.u.dtype == triplets.sigma.dtype == triplets.v.dtype == torch.float32
    assert triplets.spectrum.dtype == torch.float32
    reference = dense_triplets(SCALE * b.double() @ a.to(torch.bfloat16).double(), k=2)
    torch.testing.assert_close(triplets.sigma, reference.sigma, atol=TOLERANCE, rtol=0)


def test_mismatched_factors_raise_naming_both_shapes() -> None:
    message = r"left has 16 columns but right has 8 rows \(left: \(256, 16\), right: \(8, 192\)\)"
    with pytest.raises(ValueError, match=message):
        factored_triplets(torch.zeros(256, 16), torch.zeros(8, 192), k=1)
    with pytest.raises(ValueError, match=r"left and right must be 2-D; got left: \(5,\), right: \(5, 6\)"):
        factored_triplets(torch.zeros(5), torch.zeros(5, 6), k=1)


def test_difference_with_a_mismatched_old_rank_raises_naming_the_stacked_shapes() -> None:
    b_new, a_new = random_lora(M, N, RANK, seed=14)
    with pytest.raises(ValueError, match=r"left has 16 columns but right has 12 rows.*\(256, 16\).*\(12, 192\)"):
        factored_triplets(*stacked_difference(b_new, a_new, b_new, a_new[:4]), k=1)


def test_non_positive_k_raises() -> None:
    b, a = random_lora(M, N, RANK, seed=16)
    with pytest.raises(ValueError, match="k must be at least 1"):
        factored_triplets(*lora_factors(b, a), k=0)
    with pytest.raises(ValueError, match="k must be at least 1"):
        dense_triplets(b @ a, k=0)


def test_small_but_real_singular_values_are_kept() -> None:
    generator = torch.Generator().manual_seed(17)
    u = torch.linalg.qr(torch.randn(M, 2, generator=generator))[0]
    v = torch.linalg.qr(torch.randn(N, 2, generator=generator))[0]
    sigma = torch.tensor([1.0, 1e-4])
    triplets = factored_triplets(u * sigma, v.T, k=2)
    torch.testing.assert_close(triplets.spectrum, sigma, atol=1e-6, rtol=0)
    assert triplets.energy_ratio == pytest.approx(1.0 / (1.0 + 1e-4), abs=1e-6)


def test_randomized_path_for_large_matrices_matches_the_exact_svd() -> None:
    generator = torch.Generator().manual_seed(3)
    left, right = torch.randn(90, 6, generator=generator), torch.randn(6, 70, generator=generator)
    matrix = left @ torch.diag(torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5, 0.25])) @ right
    matrix += 1e-3 * torch.randn(90, 70, generator=generator)  # full rank: E1 needs every singular value
    exact = dense_triplets(matrix, 2)
    randomized = dense_triplets(matrix, 2, exact_limit=10)
    assert torch.allclose(randomized.sigma, exact.sigma, rtol=1e-5)
    assert torch.allclose(randomized.spectrum, exact.spectrum, rtol=1e-4, atol=1e-5)
    assert randomized.energy_ratio == pytest.approx(exact.energy_ratio, rel=1e-5)
    for k in range(2):
        product = torch.outer(randomized.u[:, k], randomized.v[:, k])
        assert torch.allclose(product, torch.outer(exact.u[:, k], exact.v[:, k]), atol=1e-5)


def test_randomized_path_raises_when_it_misses_its_checked_accuracy() -> None:
    matrix = torch.randn(60, 50, generator=torch.Generator().manual_seed(0))  # flat spectrum, fp32 residual ~1e-7
    with pytest.raises(LowRankError, match=r"60×50 matrix have residual .* of σ_1"):
        dense_triplets(matrix, 1, exact_limit=10, tolerance=1e-12)
