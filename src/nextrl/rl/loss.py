"""Token-level pieces of the GRPO / PPO-clip policy loss.

Shapes: ``B`` sequences, ``L`` positions, ``V`` vocabulary entries. Per-token tensors are
``(B, L)`` and ``mask`` is 1 (or ``True``) on response tokens and 0 on prompt and padding.
"""

import torch
from torch import Tensor

KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")
AGGREGATIONS: tuple[str, ...] = ("token", "sequence")


def _require_choice(argument: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {argument} {value!r}; expected one of {allowed}")


def _require_positive_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _scaled_logits(logits: Tensor, temperature: float) -> Tensor:
    # Softmax in bf16/fp16 loses too much precision for importance ratios; promote to >= fp32.
    compute_dtype = torch.promote_types(logits.dtype, torch.float32)
    return logits.to(compute_dtype) / temperature


def token_logprobs(logits: Tensor, target_ids: Tensor, temperature: float) -> Tensor:
    """``log softmax(logits / temperature)`` gathered at ``target_ids``; shape ``(B, L)``.

    ``logits`` is ``(B, L, V)`` and already aligned with ``target_ids`` ``(B, L)`` (position
    ``t`` holds the logits that predicted ``target_ids[:, t]``). Log-probs are taken at the
    sampling temperature so that the importance ratio compares the same distribution the
    samples were drawn from.
    """
    _require_positive_temperature(temperature)
    if logits.ndim != 3 or target_ids.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, L, V) and target_ids (B, L); got logits "
            f"{tuple(logits.shape)} and target_ids {tuple(target_ids.shape)}"
        )
    log_probs = torch.log_softmax(_scaled_logits(logits, temperature), dim=-1)
    return log_probs.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)


def token_entropy(logits: Tensor, temperature: float) -> Tensor:
    """Entropy ``-sum_v p_v log p_v`` of ``p = softmax(logits / temperature)``; shape ``(B, L)``."""
    _require_positive_temperature(temperature)
    log_probs = torch.log_softmax(_scaled_logits(logits, temperature), dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, estimator: str) -> Tensor:
    """Per-token estimate of ``KL(pi_theta || pi_ref)`` from tokens sampled from ``pi_theta``.

    With ``log_ratio = logprobs - ref_logprobs`` (Schulman 2020, "Approximating KL
    Divergence", http://joschu.net/blog/kl-approx.html):

    - ``"k1"``: ``log_ratio`` (unbiased, high variance, can be negative);
    - ``"k2"``: ``0.5 * log_ratio**2`` (biased, low variance, non-negative);
    - ``"k3"``: ``exp(-log_ratio) - 1 + log_ratio`` (unbiased, low variance, non-negative;
      the estimator of DeepSeekMath arXiv 2402.03300 eq. 4).
    """
    _require_choice("kl_estimator", estimator, KL_ESTIMATORS)
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"ref_logprobs shape {tuple(ref_logprobs.shape)} does not match logprobs shape {tuple(logprobs.shape)}"
        )
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    # expm1 keeps k3 accurate (and non-negative) when log_ratio is tiny.
    return torch.expm1(-log_ratio) + log_ratio


def masked_aggregate(values: Tensor, mask: Tensor, aggregation: str) -> Tensor:
    """Reduce per-token ``values`` ``(B, L)`` over the tokens where ``mask`` is non-zero.

    - ``"token"``: ``sum(values * mask) / sum(mask)`` over the whole batch, so every token
      weighs the same (DAPO, Yu et al. 2025, arXiv 2503.14476, token-level policy
      gradient loss).
    - ``"sequence"``: mean over sequences of ``sum_t(values * mask) / sum_t(mask)``, so every
      sequence weighs the same (original GRPO, arXiv 2402.03300 eq. 3).

    Sequences with no masked-in token are left out of the sequence mean; an all-zero mask
    gives a zero that is still connected to the graph of ``values``. Masked-out positions
    never influence the result, even if they hold inf or NaN.
    """
    _require_choice("aggregation", aggregation, AGGREGATIONS)
    if values.ndim != 2 or mask.shape != values.shape:
        raise ValueError(
            f"values must be (B, L) and mask the same shape; got values "
            f"{tuple(values.shape)} and mask {tuple(mask.shape)}"
        )
    is_response = mask.bool()
    # where() rather than values * mask: 0 * inf would be NaN.
    masked_values = torch.where(is_response, values, torch.zeros_like(values))
    if aggregation == "token":
        return masked_values.sum() / is_response.sum().clamp(min=1)
    tokens_per_sequence = is_response.sum(dim=-1)
    sequence_means = masked_values.sum(dim=-1) / tokens_per_sequence.clamp(min=1)
    # Empty sequences contribute 0 to the numerator, so only the denominator must skip them.
    return sequence_means.sum() / (tokens_per_sequence > 0).sum().clamp(min=1)


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float,
    aggregation: str,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip surrogate with per-sequence advantages, plus an optional KL penalty.

    Per token, with ``ratio = exp(logprobs - old_logprobs)`` and the sequence's advantage
    ``A`` broadcast over its tokens::

        loss_t = -min(ratio * A, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A)
                 + kl_coef * kl_penalty(logprobs, ref_logprobs, kl_estimator)

    (PPO, Schulman et al. 2017, arXiv 1707.06347 eq. 7; GRPO, Shao et al. 2024,
    arXiv 2402.03300 eq. 3), reduced with ``masked_aggregate(..., aggregation)``.
    When ``old_logprobs == logprobs.detach()`` the gradient is the vanilla policy gradient
    ``-A * grad(logprobs)``.

    Returns the loss and stats (python floats, no grad):

    - ``"policy_loss"``: the clipped surrogate alone, aggregated like the loss (the returned
      loss equals ``policy_loss + kl_coef * kl``);
    - ``"kl"``: the KL estimate aggregated like the loss, ``0.0`` without ``ref_logprobs``;
    - ``"clip_fraction"``: fraction of response tokens whose clipped branch is the active
      one (``ratio > 1 + clip_eps`` with ``A > 0``, or ``ratio < 1 - clip_eps`` with ``A < 0``);
    - ``"ratio_mean"``: mean ratio over response tokens.
    """
    _require_choice("aggregation", aggregation, AGGREGATIONS)
    _require_choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    if not kl_coef >= 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if kl_coef > 0 and ref_logprobs is None:
        raise ValueError(f"ref_logprobs is required when kl_coef > 0 (kl_coef={kl_coef})")
    if logprobs.ndim != 2:
        raise ValueError(f"logprobs must be (B, L), got {tuple(logprobs.shape)}")
    per_token_inputs = {"old_logprobs": old_logprobs, "mask": mask, "ref_logprobs": ref_logprobs}
    for argument, tensor in per_token_inputs.items():
        if tensor is not None and tensor.shape != logprobs.shape:
            raise ValueError(
                f"{argument} shape {tuple(tensor.shape)} does not match logprobs shape {tuple(logprobs.shape)}"
            )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be (B,) = {tuple(logprobs.shape[:1])}, got {tuple(advantages.shape)}")

    # Padding may hold arbitrary old/ref log-probs. exp() of a large gap there overflows,
    # and although masked out of the value, 0 * inf in backward would make the gradient
    # NaN; pinning them to logprobs makes every padding log-ratio exactly 0.
    is_response = mask.bool()
    detached_logprobs = logprobs.detach()
    old_logprobs = torch.where(is_response, old_logprobs, detached_logprobs)

    ratio = torch.exp(logprobs - old_logprobs)
    token_advantages = advantages.unsqueeze(-1)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    surrogate_loss = -torch.min(ratio * token_advantages, clipped_ratio * token_advantages)

    kl_per_token: Tensor | None = None
    per_token_loss = surrogate_loss
    if ref_logprobs is not None:
        ref_logprobs = torch.where(is_response, ref_logprobs, detached_logprobs)
        kl_per_token = kl_penalty(logprobs, ref_logprobs, kl_estimator)
        if kl_coef > 0:
            per_token_loss = surrogate_loss + kl_coef * kl_per_token
    loss = masked_aggregate(per_token_loss, mask, aggregation)

    with torch.no_grad():
        is_clipped = ((token_advantages > 0) & (ratio > 1.0 + clip_eps)) | (
            (token_advantages < 0) & (ratio < 1.0 - clip_eps)
        )
        kl = 0.0 if kl_per_token is None else masked_aggregate(kl_per_token, mask, aggregation)
        stats = {
            "policy_loss": float(masked_aggregate(surrogate_loss, mask, aggregation)),
            "kl": float(kl),
            "clip_fraction": float(masked_aggregate(is_clipped.to(ratio.dtype), mask, "token")),
            "ratio_mean": float(masked_aggregate(ratio, mask, "token")),
        }
    return loss, stats
