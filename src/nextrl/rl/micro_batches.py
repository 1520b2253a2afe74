"""Micro-batches by a token budget (``rl.micro_batch_tokens``): one optimizer step over a batch, in slices.

A batch of B rollouts padded to L tokens (prompt + completion) is cut into contiguous slices of at most
⌊budget / L⌋ sequences, so the forward pass never holds the full-vocabulary logits of more than ``budget`` tokens.
Gradients accumulate over the slices; each slice's loss is weighted by its share of the batch's aggregation
denominator, so the accumulated loss and gradient equal the full batch's (up to float summation order):

* ``token`` aggregation, Σ_all ℓ_t / N: a slice's mean Σ_slice ℓ_t / N_slice is weighted by N_slice / N;
* ``sequence`` aggregation, Σ_i (mean_t ℓ_it) / S over the S non-empty sequences: weight S_slice / S.

(:func:`nextrl.rl.loss.masked_aggregate` defines both.)
"""

from __future__ import annotations

import torch

from nextrl.rl.loss import AGGREGATIONS


class MicroBatchError(ValueError):
    """A token budget that cannot hold one sequence; the message names ``rl.micro_batch_tokens``."""


def micro_batches(batch_size: int, sequence_length: int, token_budget: int | None) -> list[slice]:
    """Contiguous slices of at most ⌊token_budget / sequence_length⌋ rows (the whole batch when no budget)."""
    if token_budget is None:
        return [slice(0, batch_size)]
    rows = token_budget // sequence_length
    if rows < 1:
        raise MicroBatchError(
            f"rl.micro_batch_tokens: a budget of {token_budget} tokens holds no sequence of {sequence_length} tokens "
            f"(prompt + completion); raise it to at least {sequence_length}"
        )
    return [slice(start, min(start + rows, batch_size)) for start in range(0, batch_size, rows)]


def slice_weight(mask: torch.Tensor, rows: slice, aggregation: str) -> float:
    """The slice's share of the batch's aggregation denominator (module docstring); ``mask`` is the batch's (B, L)."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; expected one of {AGGREGATIONS}")
    counts = mask.bool().sum(dim=-1) if aggregation == "token" else (mask.bool().sum(dim=-1) > 0).long()
    return float(counts[rows].sum()) / max(1, float(counts.sum()))
