import contextlib
import itertools
import math
from collections.abc import Iterator
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from nextrl.rl.loss import (
    AGGREGATIONS,
    KL_ESTIMATORS,
    kl_penalty,
    masked_aggregate,
    policy_loss,
    token_entropy,
    token_logprobs,
)
from nextrl.rl.training import grpo_step
from nextrl.rollouts.generation import Rollouts


def assert_values(actual: torch.Tensor, expected: list[list[float]]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), rtol=0.0, atol=1e-6)


# --- token_logprobs / token_entropy -------------------------------------------------------

LOGITS_0_LN3 = torch.tensor([[[0.0, math.log(3.0)]]])  # (B=1, L=1, V=2)


@pytest.mark.parametrize(
    ("temperature", "expected"),
    [
        # T=1: softmax([0, ln 3]) = [1/4, 3/4] -> [ln 0.25, ln 0.75]
        (1.0, [-1.3862943611, -0.2876820725]),
        # T=2: logits / 2 = [0, ln 3 / 2 = ln sqrt(3)], Z = 1 + sqrt(3) = 2.7320508076
        #      -> [-ln 2.7320508076, ln sqrt(3) - ln 2.7320508076] = [-1.0050525387, -0.4557463944]
        (2.0, [-1.0050525387, -0.4557463944]),
    ],
)
def test_token_logprobs_at_temperature(temperature: float, expected: list[float]) -> None:
    for token, expected_logprob in enumerate(expected):
        target_ids = torch.tensor([[token]])
        assert_values(token_logprobs(LOGITS_0_LN3, target_ids, temperature), [[expected_logprob]])


def test_token_logprobs_gathers_per_position() -> None:
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    target_ids = torch.tensor([[0, 4, 2], [1, 1, 3]])
    expected = torch.log_softmax(logits / 0.7, dim=-1)
    result = token_logprobs(logits, target_ids, temperature=0.7)
    assert result.shape == (2, 3)
    assert result[1, 2] == expected[1, 2, 3]
    assert result[0, 1] == expected[0, 1, 4]


def test_token_logprobs_computes_bf16_logits_in_fp32() -> None:
    logits = LOGITS_0_LN3.to(torch.bfloat16)
    result = token_logprobs(logits, torch.tensor([[0]]), temperature=1.0)
    assert result.dtype == torch.float32


def test_token_entropy() -> None:
    # uniform over V = 5 at any temperature: ln 5 = 1.6094379124
    assert_values(token_entropy(torch.zeros(1, 2, 5), temperature=0.6), [[1.6094379124] * 2])
    # p = [1/4, 3/4]: -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.3465735903 + 0.2157615543 = 0.5623351446
    assert_values(token_entropy(LOGITS_0_LN3, temperature=1.0), [[0.5623351446]])


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_temperature_must_be_positive(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(LOGITS_0_LN3, torch.tensor([[0]]), temperature)
    with pytest.raises(ValueError, match="temperature"):
        token_entropy(LOGITS_0_LN3, temperature)


def test_token_logprobs_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="target_ids"):
        token_logprobs(LOGITS_0_LN3, torch.tensor([[0, 1]]), temperature=1.0)


# --- kl_penalty ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        # log_ratio = [0.5, -1.0]
        ("k1", [0.5, -1.0]),
        # 0.5 * 0.5**2 = 0.125; 0.5 * (-1)**2 = 0.5
        ("k2", [0.125, 0.5]),
        # e^-0.5 - 1 + 0.5 = 0.6065306597 - 0.5 = 0.1065306597; e^1 - 1 - 1 = 0.7182818285
        ("k3", [0.1065306597, 0.7182818285]),
    ],
)
def test_kl_estimators(estimator: str, expected: list[float]) -> None:
    logprobs = torch.tensor([[-1.0, -3.0]])
    ref_logprobs = torch.tensor([[-1.5, -2.0]])
    assert_values(kl_penalty(logprobs, ref_logprobs, estimator), [expected])


def test_k3_is_non_negative() -> None:
    generator = torch.Generator().manual_seed(0)
    logprobs = torch.randn(64, 64, generator=generator) * 3
    ref_logprobs = torch.cat([logprobs[:, :8] + 1e-7, torch.randn(64, 56, generator=generator)], 1)
    assert (kl_penalty(logprobs, ref_logprobs, "k3") >= 0).all()


def test_unknown_kl_estimator() -> None:
    with pytest.raises(ValueError, match=r"'k4'.*'k1', 'k2', 'k3'"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


# --- masked_aggregate ---------------------------------------------------------------------

HUGE = 1e30
# sequence 0 has 3 response tokens, sequence 1 has 1; masked positions hold garbage.
VALUES = torch.tensor([[1.0, 2.0, 3.0], [10.0, HUGE, -HUGE]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        # (1 + 2 + 3 + 10) / 4 tokens = 4
        ("token", 4.0),
        # mean((1 + 2 + 3) / 3, 10 / 1) = (2 + 10) / 2 = 6
        ("sequence", 6.0),
    ],
)
def test_masked_aggregate(aggregation: str, expected: float) -> None:
    assert masked_aggregate(VALUES, MASK, aggregation).item() == pytest.approx(expected)
    assert masked_aggregate(VALUES, MASK.bool(), aggregation).item() == pytest.approx(expected)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_masked_positions_do_not_matter(aggregation: str) -> None:
    for garbage in [0.0, float("inf"), float("nan")]:
        values = torch.where(MASK.bool(), VALUES, torch.tensor(garbage))
        assert masked_aggregate(values, MASK, aggregation).item() == pytest.approx(
            masked_aggregate(VALUES, MASK, aggregation).item()
        )


def test_empty_sequence_is_left_out_of_sequence_mean() -> None:
    values = torch.cat([VALUES, torch.full((1, 3), HUGE)])
    mask = torch.cat([MASK, torch.zeros(1, 3)])
    # still (2 + 10) / 2 = 6, not (2 + 10 + 0) / 3 = 4
    assert masked_aggregate(values, mask, "sequence").item() == pytest.approx(6.0)
    assert masked_aggregate(values, mask, "token").item() == pytest.approx(4.0)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_empty_mask_gives_differentiable_zero(aggregation: str) -> None:
    values = torch.full((2, 3), float("inf"), requires_grad=True)
    result = masked_aggregate(values, torch.zeros(2, 3), aggregation)
    assert result.item() == 0.0
    result.backward()
    assert values.grad is not None
    assert torch.equal(values.grad, torch.zeros(2, 3))


def test_unknown_aggregation() -> None:
    with pytest.raises(ValueError, match=r"'mean'.*'token', 'sequence'"):
        masked_aggregate(VALUES, MASK, "mean")


def test_mask_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="mask"):
        masked_aggregate(VALUES, MASK[:, :2], "token")


# --- policy_loss --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("advantage", "ratios", "expected_loss", "expected_clip_fraction"),
    [
        # A=+2, eps=0.2: -min(2*1.1, 2*1.1) = -2.2; -min(2*1.5, 2*1.2) = -2.4 (clipped)
        # mean = -2.3; 1 of 2 tokens clipped
        (2.0, [1.1, 1.5], -2.3, 0.5),
        # A=+2: -min(2*0.5, 2*0.8) = -1.0 (low ratio with A>0 is not clipped); -min(2, 2) = -2
        # mean = -1.5
        (2.0, [0.5, 1.0], -1.5, 0.0),
        # A=-1: -min(-0.9, -0.9) = 0.9; -min(-0.5, -0.8) = 0.8 (clipped); mean = 0.85
        (-1.0, [0.9, 0.5], 0.85, 0.5),
        # A=-1: -min(-1.5, -1.2) = 1.5 (high ratio with A<0 is not clipped); -min(-1.1, -1.1) = 1.1
        # mean = 1.3
        (-1.0, [1.5, 1.1], 1.3, 0.0),
    ],
)
def test_clipped_loss_single_sequence(
    advantage: float, ratios: list[float], expected_loss: float, expected_clip_fraction: float
) -> None:
    old_logprobs = torch.tensor([[-2.0, -0.7]])
    logprobs = old_logprobs + torch.log(torch.tensor([ratios]))
    loss, stats = policy_loss(logprobs, old_logprobs, torch.tensor([advantage]), torch.ones(1, 2), 0.2, "token")
    assert loss.item() == pytest.approx(expected_loss, abs=1e-6)
    assert stats["policy_loss"] == pytest.approx(expected_loss, abs=1e-6)
    assert stats["clip_fraction"] == expected_clip_fraction
    assert stats["ratio_mean"] == pytest.approx(sum(ratios) / 2, abs=1e-6)
    assert stats["kl"] == 0.0


def test_clipped_token_has_no_gradient() -> None:
    # A=+2, ratios [1.1, 1.5], token mean over 2 tokens:
    # d/dlogp_0 of -(2 * ratio_0) / 2 = -ratio_0 = -1.1; token 1 is clipped -> 0
    old_logprobs = torch.tensor([[-2.0, -0.7]])
    logprobs = (old_logprobs + torch.log(torch.tensor([[1.1, 1.5]]))).requires_grad_()
    loss, _ = policy_loss(logprobs, old_logprobs, torch.tensor([2.0]), torch.ones(1, 2), 0.2, "token")
    loss.backward()
    assert logprobs.grad is not None
    assert_values(logprobs.grad, [[-1.1, 0.0]])


def test_aggregations_weigh_sequences_differently() -> None:
    # on-policy (ratio 1) so per-token loss = -A: sequence 0 (A=1, 3 tokens) -> -1,
    # sequence 1 (A=-2, 1 token) -> 2
    logprobs = torch.full((2, 3), -1.0)
    advantages = torch.tensor([1.0, -2.0])
    token_loss, _ = policy_loss(logprobs, logprobs, advantages, MASK, 0.2, "token")
    sequence_loss, _ = policy_loss(logprobs, logprobs, advantages, MASK, 0.2, "sequence")
    # token: (-1 - 1 - 1 + 2) / 4 = -0.25; sequence: (-1 + 2) / 2 = 0.5
    assert token_loss.item() == pytest.approx(-0.25)
    assert sequence_loss.item() == pytest.approx(0.5)


def test_kl_term_is_added_with_kl_coef() -> None:
    # on-policy, A=1 -> surrogate -1 per token; log_ratio to ref = 0.5 -> k3 = 0.1065306597
    # loss = -1 + 0.1 * 0.1065306597 = -0.9893469340
    logprobs = torch.tensor([[-1.0, -2.0]])
    ref_logprobs = logprobs - 0.5
    loss, stats = policy_loss(
        logprobs,
        logprobs,
        torch.tensor([1.0]),
        torch.ones(1, 2),
        0.2,
        "token",
        ref_logprobs=ref_logprobs,
        kl_coef=0.1,
    )
    assert loss.item() == pytest.approx(-0.9893469340, abs=1e-6)
    assert stats["policy_loss"] == pytest.approx(-1.0)
    assert stats["kl"] == pytest.approx(0.1065306597, abs=1e-6)


def test_kl_is_reported_but_not_added_with_zero_kl_coef() -> None:
    logprobs = torch.tensor([[-1.0, -2.0]])
    loss, stats = policy_loss(
        logprobs,
        logprobs,
        torch.tensor([1.0]),
        torch.ones(1, 2),
        0.2,
        "token",
        ref_logprobs=logprobs - 0.5,
        kl_estimator="k2",
    )
    assert loss.item() == pytest.approx(-1.0)
    assert stats["kl"] == pytest.approx(0.125)  # 0.5 * 0.5**2


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_on_policy_gradient_is_vanilla_policy_gradient(aggregation: str) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 6, generator=generator, requires_grad=True)
    target_ids = torch.randint(0, 6, (2, 4), generator=generator)
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    advantages = torch.tensor([1.5, -0.5])

    logprobs = token_logprobs(logits, target_ids, temperature=0.7)
    loss, _ = policy_loss(logprobs, logprobs.detach(), advantages, mask, 0.2, aggregation)
    (grad,) = torch.autograd.grad(loss, logits)

    logprobs = token_logprobs(logits, target_ids, temperature=0.7)
    weighted = -advantages.unsqueeze(-1) * logprobs * mask
    if aggregation == "token":
        reference = weighted.sum() / mask.sum()
    else:
        reference = (weighted.sum(-1) / mask.sum(-1)).mean()
    (expected_grad,) = torch.autograd.grad(reference, logits)

    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, expected_grad)


def test_garbage_in_padding_leaves_loss_and_gradient_unchanged() -> None:
    logprobs = torch.tensor([[-1.0, -0.5, -3.0], [-2.0, -4.0, -6.0]], requires_grad=True)
    old_logprobs = torch.tensor([[-1.2, -0.4, -2.5], [-1.9, 0.0, 0.0]])
    ref_logprobs = torch.tensor([[-1.1, -0.6, -2.8], [-2.2, 0.0, 0.0]])
    advantages = torch.tensor([0.7, -1.3])

    def loss_and_grad(old: torch.Tensor, ref: torch.Tensor) -> tuple[float, torch.Tensor]:
        loss, _ = policy_loss(logprobs, old, advantages, MASK, 0.2, "sequence", ref_logprobs=ref, kl_coef=0.05)
        (grad,) = torch.autograd.grad(loss, logprobs)
        return loss.item(), grad

    clean_loss, clean_grad = loss_and_grad(old_logprobs, ref_logprobs)
    garbage = torch.tensor([[0.0, 0.0, 0.0], [0.0, -500.0, 500.0]])
    dirty_loss, dirty_grad = loss_and_grad(old_logprobs + garbage, ref_logprobs - garbage)
    assert dirty_loss == clean_loss
    assert torch.isfinite(dirty_grad).all()
    torch.testing.assert_close(dirty_grad, clean_grad)


def test_missing_ref_logprobs_with_kl_coef() -> None:
    logprobs = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(logprobs, logprobs, torch.ones(1), torch.ones(1, 2), 0.2, "token", kl_coef=0.1)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"aggregation": "mean"}, "aggregation"),
        ({"kl_estimator": "k4"}, "kl_estimator"),
        ({"clip_eps": 0.0}, "clip_eps"),
        ({"kl_coef": -0.1, "ref_logprobs": torch.zeros(1, 2)}, "kl_coef"),
        ({"advantages": torch.ones(1, 2)}, "advantages"),
        ({"old_logprobs": torch.zeros(1, 3)}, "old_logprobs"),
        ({"mask": torch.ones(2, 2)}, "mask"),
        ({"ref_logprobs": torch.zeros(2)}, "ref_logprobs"),
    ],
)
def test_policy_loss_rejects_bad_arguments(overrides: dict[str, object], match: str) -> None:
    arguments: dict[str, object] = {
        "logprobs": torch.zeros(1, 2),
        "old_logprobs": torch.zeros(1, 2),
        "advantages": torch.ones(1),
        "mask": torch.ones(1, 2),
        "clip_eps": 0.2,
        "aggregation": "token",
    }
    arguments.update(overrides)
    with pytest.raises(ValueError, match=match):
        policy_loss(**arguments)  # type: ignore[arg-type]


def test_exported_names() -> None:
    assert KL_ESTIMATORS == ("k1", "k2", "k3")
    assert AGGREGATIONS == ("token", "sequence")


# --- the step's logged metrics (grpo_step) ------------------------------------------------


class TokenTable(torch.nn.Module):
    """A hand-checkable policy: the same learnable logits at every position; with the adapter disabled (the KL
    reference) the logits are zero, i.e. uniform over the vocabulary."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits))
        self.adapter = True

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor):
        logits = self.logits if self.adapter else torch.zeros_like(self.logits)
        return SimpleNamespace(logits=logits.expand(*input_ids.shape, -1))

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        self.adapter = False
        try:
            yield
        finally:
            self.adapter = True


class FixedRollouts:
    """One prompt, three completions over the vocabulary {0, 1, 2}: "right" = 1 1 (reward 1), "meh" = 0 (reward 1/2)
    and "wrong" = 2 (reward 0), each short one padded. Response tokens 1, 1, 0, 2; Dr. GRPO advantages +1/2, 0, −1/2."""

    rollouts = Rollouts(
        prompt_ids=torch.zeros(3, 1, dtype=torch.long),
        prompt_mask=torch.ones(3, 1, dtype=torch.long),
        completion_ids=torch.tensor([[1, 1], [0, 0], [2, 0]]),
        completion_mask=torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]),
        texts=["right", "meh", "wrong"],
    )

    def sync(self) -> None:
        """Fixed rollouts: nothing to serve."""

    def generate(self, prompts: list[str], num_samples: int, max_new_tokens: int, temperature: float) -> Rollouts:
        return self.rollouts


REWARDS = {"right": 1.0, "meh": 0.5, "wrong": 0.0}
STEP_RL = {
    "group_size": 3, "temperature": 1.0, "max_new_tokens": 2, "advantage": "grpo", "scale_by_std": False,
    "micro_batch_tokens": None, "clip_eps": 0.2, "aggregation": "token", "kl_coef": 0.0, "kl_estimator": "k3",
    "updates_per_batch": 1, "max_grad_norm": 1e9, "rollout_is_cap": 2.0,
}  # fmt: skip
ROW_SLICES = 3  # micro_batch_tokens: a prompt + completion is 3 tokens, so one row per slice


def logged_step(model: TokenTable, lr: float, **rl: object) -> dict[str, float]:
    batch = pd.DataFrame({"prompt": ["p"], "entry": ["{}"]})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scorer = lambda text, entry: REWARDS[text]  # noqa: E731
    return grpo_step(model, optimizer, FixedRollouts(), scorer, batch, {**STEP_RL, **rl})  # type: ignore[arg-type]


# Policy softmax([0, ln 3, 0]) = [1/5, 3/5, 1/5], reference uniform 1/3: log-ratio r = ln(9/5) on the two 1s and
# ln(3/5) on the 0 and the 2; the logged kl is the token mean of the estimator (k1 r, k2 r²/2, k3 e^−r − 1 + r).
KL_BY_HAND = {
    "k1": (2 * math.log(9 / 5) + 2 * math.log(3 / 5)) / 4,
    "k2": (2 * 0.5 * math.log(9 / 5) ** 2 + 2 * 0.5 * math.log(3 / 5) ** 2) / 4,
    "k3": (2 * (5 / 9 - 1 + math.log(9 / 5)) + 2 * (5 / 3 - 1 + math.log(3 / 5))) / 4,
}


@pytest.mark.parametrize("micro_batch_tokens", [None, ROW_SLICES], ids=["whole", "row_slices"])
@pytest.mark.parametrize("estimator", KL_ESTIMATORS)
def test_the_logged_kl_uses_the_configured_estimator(estimator: str, micro_batch_tokens: int | None) -> None:
    metrics = logged_step(TokenTable([0.0, math.log(3.0), 0.0]), 0.0, kl_coef=0.1, kl_estimator=estimator,
                          micro_batch_tokens=micro_batch_tokens)  # fmt: skip
    assert metrics["kl"] == pytest.approx(KL_BY_HAND[estimator], abs=1e-6)  # float32 log-probs
    assert metrics["clip_fraction"] == 0.0  # one update: the ratio is exactly 1
    assert min(abs(a - b) for a, b in itertools.combinations(KL_BY_HAND.values(), 2)) > 1e-3  # they differ here


def test_the_logged_kl_is_the_token_mean_of_kl_penalty() -> None:
    model = TokenTable([0.3, -0.2, 0.1])
    metrics = logged_step(model, 0.0, kl_coef=0.1, kl_estimator="k1")
    rollouts = FixedRollouts.rollouts
    logprobs = token_logprobs(model.logits.detach().expand(3, 2, -1), rollouts.completion_ids, 1.0)
    reference = torch.full_like(logprobs, math.log(1 / 3))
    expected = masked_aggregate(kl_penalty(logprobs, reference, "k1"), rollouts.completion_mask, "token")
    assert metrics["kl"] == pytest.approx(float(expected), rel=1e-6)
    assert logged_step(TokenTable([0.3, -0.2, 0.1]), 0.0)["kl"] == 0.0  # no KL penalty: no reference, kl 0


@pytest.mark.parametrize("micro_batch_tokens", [None, ROW_SLICES], ids=["whole", "row_slices"])
def test_the_clip_fraction_is_logged_token_weighted_over_slices(micro_batch_tokens: int | None) -> None:
    """Two updates from logits 0 (uniform). The first update's gradient of the token-mean surrogate moves the
    logits by lr/4 · (−1/6, 5/6, −2/3), so with lr 4 the second update sees ratio 3·p(1) ≈ 1.89 on the 1s (A > 0,
    above 1 + 0.2: clipped) and 3·p(2) ≈ 0.42 on the 2 (A < 0, below 1 − 0.2: clipped); the 0 has A = 0 and is never
    clipped. Clip fraction 3/4 of the tokens — the row-sliced step weighs its slices (1, 0, 1) by their token shares
    (1/2, 1/4, 1/4), not 1/3 each (which would give 2/3)."""
    probabilities = torch.softmax(torch.tensor([-1 / 6, 5 / 6, -2 / 3], dtype=torch.float64), dim=0)
    assert 3 * probabilities[1] > 1.8 and 3 * probabilities[2] < 0.5  # far outside the clip range
    metrics = logged_step(TokenTable([0.0, 0.0, 0.0]), 4.0, updates_per_batch=2, micro_batch_tokens=micro_batch_tokens)
    assert metrics["clip_fraction"] == pytest.approx(3 / 4)
    assert 0.0 <= metrics["clip_fraction"] <= 1.0
