"""A jump: candidate adapters W_T + α·ΔŴ, the choice among them, and folding the chosen jump into the weights.

NExt (arXiv 2604.11446 §3 step 5): Ŵ = W_T + α·ΔŴ. With the round's adapter W_T = W_start + s·B A and a predicted
ΔŴ = L R (L: m×k, R: k×n, e.g. σ̂û and v̂ᵀ), Ŵ − W_start = [s·B, α·L] · [A; R] is exactly a LoRA of rank r + k with
scale 1, so a candidate is a small PEFT adapter over the round's start model (docs/method.md, "Extrapolation").
After full-parameter RL the round's own model is W_T and a candidate is the rank-k adapter α·L R over it.

After the choice (docs/method.md, "Continuation after a jump: carry-over vs fresh"): ``carry`` folds only α·ΔŴ into
the start model's weights (fp32) and training continues the same LoRA, so α = 0 leaves the weights bit-identical and
the run continues exactly as plain RL; ``fresh`` (the paper's and RL-Extra's way) merges s·B A + α·ΔŴ and the next
round trains a fresh LoRA. Either way the start model's low-rank offset from the experiment's base model grows by what
was folded, so global deltas stay exact from factors (:mod:`nextrl.lowrank.adapters`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from nextrl.lowrank.adapters import Adapter, Factors, base_weight_name, lora_config_for, save_scale_one_adapter

if TYPE_CHECKING:  # the extrapolate stage writes candidates without loading transformers (lean job)
    from transformers import PreTrainedModel

CANDIDATE_COLUMNS = ("alpha", "adapter", "delta_frob")


class JumpError(ValueError):
    """A jump that must not be written or applied (non-finite delta, module mismatch, empty α grid)."""


def candidate_name(alpha: float) -> str:
    """The one name of the candidate W_T + α·ΔŴ: its adapter directory, its label in selection and merge."""
    return f"alpha_{alpha:g}"


def alpha_grid(alphas: Sequence[float]) -> list[float]:
    """0 (no jump, always a candidate) followed by the configured α, sorted, without repeats."""
    if not alphas:
        raise JumpError("jump.alphas: the α grid is empty; give at least one extension coefficient")
    return [0.0, *sorted({float(alpha) for alpha in alphas} - {0.0})]


def check_jump(adapter: Adapter, jump: Factors) -> None:
    """The jump covers exactly the adapter's modules with matching shapes and finite entries."""
    unknown, missing = sorted(set(jump) - set(adapter.factors)), sorted(set(adapter.factors) - set(jump))
    if unknown or missing:
        raise JumpError(f"predicted modules do not match the adapter: unknown {unknown[:3]}, missing {missing[:3]}")
    for module, (left, right) in jump.items():
        b, a = adapter.factors[module]
        if left.shape[0] != b.shape[0] or right.shape[1] != a.shape[1]:
            raise JumpError(
                f"module {module}: predicted delta is {left.shape[0]}×{right.shape[1]}, "
                f"weight is {b.shape[0]}×{a.shape[1]}"
            )
        if not (torch.isfinite(left).all() and torch.isfinite(right).all()):
            raise JumpError(f"predicted delta for module {module} is not finite; refusing to write any candidate")


def pad_rank(jump: Factors) -> Factors:
    """Zero-pad every module's factors to the largest rank, so all candidates are adapters of one rank."""
    rank = max(left.shape[1] for left, _ in jump.values())
    padded = {}
    for module, (left, right) in jump.items():
        extra = rank - left.shape[1]
        padded[module] = (
            torch.cat([left, left.new_zeros(left.shape[0], extra)], dim=1),
            torch.cat([right, right.new_zeros(extra, right.shape[1])], dim=0),
        )
    return padded


def candidate_factors(adapter: Adapter | None, jump: Factors, alpha: float) -> Factors:
    """Per module ([s·B, α·L], [A; R]): the LoRA (scale 1) of W_T + α·ΔŴ over the round's start model; without an
    adapter (full-parameter RL, where the model W_T itself is the start) just (α·L, R)."""
    if adapter is None:
        return {module: (alpha * left, right) for module, (left, right) in jump.items()}
    return {
        module: (torch.cat([adapter.scale * b, alpha * jump[module][0]], dim=1), torch.cat([a, jump[module][1]], dim=0))
        for module, (b, a) in adapter.factors.items()
    }


def write_candidates(adapter: Adapter | None, jump: Factors, alphas: Sequence[float], directory: Path) -> pd.DataFrame:
    """``directory/alpha_<α>/`` adapters for every α of :func:`alpha_grid` (over the round's start model, or over
    W_T when ``adapter`` is None: full-parameter RL); returns the candidates table."""
    if adapter is not None:
        check_jump(adapter, jump)
    template = adapter.config if adapter is not None else lora_config_for(jump)
    jump = pad_rank(jump)
    frobenius = sum(float(((left.T @ left) * (right @ right.T)).sum()) for left, right in jump.values()) ** 0.5
    rows = []
    for alpha in alpha_grid(alphas):
        save_scale_one_adapter(candidate_factors(adapter, jump, alpha), template, directory / candidate_name(alpha))
        rows.append({"alpha": alpha, "adapter": candidate_name(alpha), "delta_frob": alpha * frobenius})
    return pd.DataFrame(rows, columns=list(CANDIDATE_COLUMNS))


def selected_alpha(selection: pd.DataFrame) -> float:
    """The α a selection table marks as selected."""
    return float(selection.loc[selection["selected"], "alpha"].iloc[0])


def choose(scores: pd.DataFrame) -> float:
    """The α with the highest selection accuracy; ties go to the smallest α (0 = no jump)."""
    best = scores["accuracy"].max()
    return float(scores.loc[scores["accuracy"] == best, "alpha"].min())


@torch.no_grad()
def add_low_rank(model: PreTrainedModel, factors: Factors, coefficient: float) -> None:
    """W ← W + coefficient · L R for every module of ``factors``, in fp32, in place; refuses a non-finite result."""
    parameters = dict(model.named_parameters())
    for module, (left, right) in factors.items():
        name = base_weight_name(module)
        if name not in parameters:
            raise JumpError(f"module {module}: the start model has no weight {name}")
        weight = parameters[name]
        updated = weight.float() + coefficient * (left.float() @ right.float())
        if not torch.isfinite(updated).all():
            raise JumpError(f"folding the jump gives a non-finite weight in {name}")
        weight.copy_(updated.to(weight.dtype))
