"""Outcome-reward advantage estimators for group-sampled RLVR.

Every estimator takes ``rewards``, a 1-D float tensor of length
``num_prompts * group_size`` in which each prompt's samples are contiguous
(rows ``[g * G:(g + 1) * G]`` are the ``G`` samples of prompt ``g``), and
returns one advantage per sample with the same shape.
"""

import torch
from torch import Tensor

ADVANTAGE_ESTIMATORS: tuple[str, ...] = ("grpo", "rloo", "reinforce_pp")


def _validate_rewards(rewards: Tensor, group_size: int, min_group_size: int) -> None:
    if rewards.ndim != 1 or not rewards.is_floating_point():
        raise ValueError(
            f"rewards must be a 1-D floating-point tensor, got shape {tuple(rewards.shape)} and dtype {rewards.dtype}"
        )
    if group_size < min_group_size:
        raise ValueError(f"group_size must be >= {min_group_size}, got {group_size}")
    if rewards.numel() == 0 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards length {rewards.numel()} is not a positive multiple of group_size={group_size}")


def _centered(values: Tensor) -> Tensor:
    """``values - values.mean(dim=-1)``, exactly zero on rows whose entries are all equal.

    The floating-point mean of equal numbers can differ from them by an ulp; divided by
    a near-zero std plus eps that residue would become a spurious non-zero advantage.
    """
    is_constant = (values == values[..., :1]).all(dim=-1, keepdim=True)
    centered = values - values.mean(dim=-1, keepdim=True)
    return torch.where(is_constant, torch.zeros_like(centered), centered)


def grpo_advantages(rewards: Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """Group-relative advantages.

    With ``scale_by_std`` (GRPO; Shao et al. 2024, "DeepSeekMath", arXiv 2402.03300,
    §4.1.2 outcome supervision): ``A_i = (r_i - mean(r_group)) / (std(r_group) + eps)``
    with Bessel-corrected (n - 1) std.
    Without it (Dr. GRPO; Liu et al. 2025, "Understanding R1-Zero-Like Training",
    arXiv 2503.20783): ``A_i = r_i - mean(r_group)``.
    A group whose rewards are all equal gets zero advantages.
    """
    # Bessel's correction needs two samples per group; the unscaled variant does not.
    _validate_rewards(rewards, group_size, min_group_size=2 if scale_by_std else 1)
    grouped = rewards.view(-1, group_size)
    centered = _centered(grouped)
    if scale_by_std:
        centered = centered / (grouped.std(dim=-1, keepdim=True, correction=1) + eps)
    return centered.reshape(-1)


def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """REINFORCE leave-one-out advantages.

    ``A_i = r_i - mean(r_j for j != i in the group) = G / (G - 1) * (r_i - mean(r_group))``
    (RLOO; Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization
    for Learning from Human Feedback in LLMs", arXiv 2402.14740; Kool et al. 2019,
    "Buy 4 REINFORCE Samples, Get a Baseline for Free!").
    A group whose rewards are all equal gets zero advantages.
    """
    _validate_rewards(rewards, group_size, min_group_size=2)
    grouped = rewards.view(-1, group_size)
    return (_centered(grouped) * (group_size / (group_size - 1))).reshape(-1)


def reinforce_pp_advantages(rewards: Tensor, group_size: int, eps: float = 1e-6) -> Tensor:
    """REINFORCE++ advantages: rewards normalised over the whole batch, not per group.

    ``A_i = (r_i - mean(r_batch)) / (std(r_batch) + eps)`` with Bessel-corrected std
    (Hu et al. 2025, "REINFORCE++", arXiv 2501.03262, global advantage normalisation).
    The paper folds a per-token KL penalty into the reward; here it is left out and the
    KL regularisation is applied by the loss's KL term instead
    (``nextrl.rl.loss.policy_loss`` with ``kl_coef > 0``).
    ``group_size`` only validates the batch layout. A batch whose rewards are all equal
    gets zero advantages.
    """
    _validate_rewards(rewards, group_size, min_group_size=1)
    if rewards.numel() < 2:
        raise ValueError(f"rewards needs at least 2 elements for a Bessel-corrected batch std, got {rewards.numel()}")
    return _centered(rewards) / (rewards.std(correction=1) + eps)


def compute_advantages(estimator: str, rewards: Tensor, group_size: int, scale_by_std: bool = True) -> Tensor:
    """Dispatch to the advantage estimator named ``estimator`` (one of ``ADVANTAGE_ESTIMATORS``).

    ``scale_by_std`` applies to ``"grpo"`` only (``False`` selects Dr. GRPO); the other
    estimators ignore it.
    """
    if estimator == "grpo":
        return grpo_advantages(rewards, group_size, scale_by_std=scale_by_std)
    if estimator == "rloo":
        return rloo_advantages(rewards, group_size)
    if estimator == "reinforce_pp":
        return reinforce_pp_advantages(rewards, group_size)
    raise ValueError(f"unknown advantage estimator {estimator!r}; expected one of {ADVANTAGE_ESTIMATORS}")
