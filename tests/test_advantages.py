import pytest
import torch

from nextrl.rl.advantages import (
    ADVANTAGE_ESTIMATORS,
    compute_advantages,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)

# Two prompts, G = 4: a mixed group and an all-correct group.
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
GROUP_SIZE = 4


def assert_values(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), rtol=0.0, atol=1e-6)


def test_grpo_divides_by_bessel_std_of_group() -> None:
    # group 1: mean 0.5, Bessel var = 4 * 0.5**2 / 3 = 1/3, std = 0.5773502692
    # A = ±0.5 / (0.5773502692 + 1e-6) = ±0.8660239038; group 2 is constant -> 0
    a = 0.8660239038
    assert_values(grpo_advantages(REWARDS, GROUP_SIZE), [a, -a, -a, a, 0.0, 0.0, 0.0, 0.0])


def test_dr_grpo_only_subtracts_group_mean() -> None:
    # group 1: r - 0.5 = ±0.5; group 2: 1 - 1 = 0
    assert_values(
        grpo_advantages(REWARDS, GROUP_SIZE, scale_by_std=False),
        [0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
    )


def test_rloo_subtracts_mean_of_other_samples() -> None:
    # r = 1: others [0, 0, 1] mean 1/3 -> 1 - 1/3 = 0.6666667
    # r = 0: others [1, 0, 1] mean 2/3 -> 0 - 2/3 = -0.6666667
    a = 0.6666667
    assert_values(rloo_advantages(REWARDS, GROUP_SIZE), [a, -a, -a, a, 0.0, 0.0, 0.0, 0.0])


def test_rloo_matches_explicit_leave_one_out_mean() -> None:
    rewards = torch.tensor([0.3, 1.7, -0.4, 2.2, 0.9, 0.1])
    grouped = rewards.view(-1, 3)
    others_mean = (grouped.sum(dim=-1, keepdim=True) - grouped) / 2
    torch.testing.assert_close(rloo_advantages(rewards, 3), (grouped - others_mean).reshape(-1))


def test_reinforce_pp_normalises_over_whole_batch() -> None:
    # batch mean = 6/8 = 0.75; squared deviations 6 * 0.25**2 + 2 * 0.75**2 = 1.5
    # Bessel std = sqrt(1.5 / 7) = 0.4629100499
    # r = 1: 0.25 / (0.4629100499 + 1e-6) = 0.5400605582
    # r = 0: -0.75 / (0.4629100499 + 1e-6) = -1.6201816746
    p, n = 0.5400605582, -1.6201816746
    assert_values(reinforce_pp_advantages(REWARDS, GROUP_SIZE), [p, n, n, p, p, p, p, p])


@pytest.mark.parametrize("estimator", ADVANTAGE_ESTIMATORS)
def test_constant_rewards_give_exact_zeros(estimator: str) -> None:
    # float32 mean of seven 0.7s is off by an ulp; without care that residue divided by
    # (std ~ 6e-8) + 1e-6 would give advantages of ~0.06 instead of 0.
    rewards = torch.full((14,), 0.7)
    advantages = compute_advantages(estimator, rewards, group_size=7)
    assert torch.equal(advantages, torch.zeros(14))


@pytest.mark.parametrize(
    ("estimator", "scale_by_std", "expected_first"),
    [("grpo", True, 0.8660239038), ("grpo", False, 0.5), ("rloo", True, 0.6666667)],
)
def test_compute_advantages_dispatches(estimator: str, scale_by_std: bool, expected_first: float) -> None:
    advantages = compute_advantages(estimator, REWARDS, GROUP_SIZE, scale_by_std=scale_by_std)
    assert advantages.shape == REWARDS.shape
    assert advantages[0].item() == pytest.approx(expected_first, abs=1e-6)


def test_compute_advantages_reinforce_pp() -> None:
    torch.testing.assert_close(
        compute_advantages("reinforce_pp", REWARDS, GROUP_SIZE),
        reinforce_pp_advantages(REWARDS, GROUP_SIZE),
    )


def test_unknown_estimator_is_named_in_error() -> None:
    with pytest.raises(ValueError, match=r"'ppo'.*'grpo', 'rloo', 'reinforce_pp'"):
        compute_advantages("ppo", REWARDS, GROUP_SIZE)


@pytest.mark.parametrize("estimator", ADVANTAGE_ESTIMATORS)
def test_length_not_divisible_by_group_size(estimator: str) -> None:
    with pytest.raises(ValueError, match="group_size=3"):
        compute_advantages(estimator, REWARDS, group_size=3)


@pytest.mark.parametrize("estimator", ADVANTAGE_ESTIMATORS)
def test_non_positive_group_size(estimator: str) -> None:
    with pytest.raises(ValueError, match="group_size"):
        compute_advantages(estimator, REWARDS, group_size=0)


def test_rloo_needs_two_samples_per_group() -> None:
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        rloo_advantages(REWARDS, group_size=1)


def test_grpo_std_needs_two_samples_per_group_but_dr_grpo_does_not() -> None:
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        grpo_advantages(REWARDS, group_size=1)
    assert torch.equal(grpo_advantages(REWARDS, group_size=1, scale_by_std=False), torch.zeros(8))


def test_reinforce_pp_needs_two_rewards() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        reinforce_pp_advantages(torch.tensor([1.0]), group_size=1)


@pytest.mark.parametrize(
    "rewards",
    [torch.ones(2, 4), torch.tensor([1, 0, 0, 1]), torch.zeros(0)],
    ids=["2-D", "integer", "empty"],
)
def test_bad_rewards_tensor(rewards: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="rewards"):
        grpo_advantages(rewards, group_size=4)
