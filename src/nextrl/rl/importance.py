"""Importance correction for rollouts sampled by another engine (vLLM) than the trainer (docs/gpu.md, failure 4).

The sampler's log-probs of the sampled tokens, log q, and the trainer's old log-probs of the same tokens, log p,
differ by kernels and precision — or by a lot when the sampler serves a stale policy. Each sequence i gets the
truncated sequence-level ratio w_i = min(exp(Σ_t m_it (log p_it − log q_it)), cap) (truncated importance sampling,
Ionides 2008, applied per sequence as docs/gpu.md proposes), which multiplies its advantage. The metrics are the
detector of a stale policy: mean |Δ log p| over response tokens and the ratio's min / mean / max before truncation.
"""

from __future__ import annotations

import torch

IS_COLUMNS = ("is_mean_abs_logprob_gap", "is_ratio_min", "is_ratio_mean", "is_ratio_max")


def sequence_weights(
    trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor, cap: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """(w, metrics): per-sequence truncated ratios (B,) and IS_COLUMNS, from (B, L) log-probs and response mask."""
    is_response = mask.bool()
    gap = torch.where(is_response, trainer_logprobs - sampler_logprobs, torch.zeros_like(trainer_logprobs))
    ratio = torch.exp(gap.sum(dim=-1))
    metrics = {
        "is_mean_abs_logprob_gap": float(gap.abs().sum() / is_response.sum().clamp(min=1)),
        "is_ratio_min": float(ratio.min()),
        "is_ratio_mean": float(ratio.mean()),
        "is_ratio_max": float(ratio.max()),
    }
    return ratio.clamp(max=cap), metrics
