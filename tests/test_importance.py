"""The sequence-level truncated importance ratio, by hand."""

import math

import pytest
import torch

from nextrl.rl.importance import IS_COLUMNS, sequence_weights


def test_ratios_gaps_and_truncation_by_hand():
    trainer = torch.tensor([[-1.0, -2.0, 9.0], [-0.5, -0.5, -0.5]])
    sampler = torch.tensor([[-1.5, -2.0, 0.0], [-0.5, -1.5, -0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])  # the 9.0 is padding: ignored
    weights, metrics = sequence_weights(trainer, sampler, mask, cap=2.0)
    # sequence 0: gap 0.5 + 0 → e^0.5 = 1.6487 (under the cap); sequence 1: gap 0 + 1 + 0 → e^1 = 2.718 → 2.0
    assert weights.tolist() == pytest.approx([math.exp(0.5), 2.0])
    assert metrics["is_mean_abs_logprob_gap"] == pytest.approx((0.5 + 1.0) / 5)
    assert metrics["is_ratio_min"] == pytest.approx(math.exp(0.5))
    assert metrics["is_ratio_max"] == pytest.approx(math.e)  # before truncation
    assert metrics["is_ratio_mean"] == pytest.approx((math.exp(0.5) + math.e) / 2)
    assert set(metrics) == set(IS_COLUMNS)


def test_the_same_policy_gives_weight_one():
    logprobs = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    weights, metrics = sequence_weights(logprobs, logprobs.clone(), torch.ones(4, 6), cap=3.0)
    assert weights.tolist() == [1.0] * 4 and metrics["is_mean_abs_logprob_gap"] == 0.0
