"""Micro-batches by a token budget: slices and weights by hand, and a micro-batched GRPO step equal to the whole one."""

import pandas as pd
import pytest
import torch

from nextrl.models import load_model, load_tokenizer
from nextrl.rl.micro_batches import MicroBatchError, micro_batches, slice_weight
from nextrl.rl.training import attach_lora, grpo_step
from nextrl.rollouts.generation import HFGenerateBackend
from nextrl.tasks import make_scorer


def test_slices_hold_at_most_the_budget():
    assert micro_batches(5, 10, None) == [slice(0, 5)]
    assert micro_batches(5, 10, 25) == [slice(0, 2), slice(2, 4), slice(4, 5)]  # 2 rows of 10 tokens fit in 25
    assert micro_batches(4, 10, 1000) == [slice(0, 4)]
    with pytest.raises(MicroBatchError, match=r"rl.micro_batch_tokens: a budget of 9 tokens holds no sequence of 10"):
        micro_batches(4, 10, 9)


def test_slice_weights_are_shares_of_the_aggregation_denominator():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]])  # 3, 1, 0, 2 tokens
    assert slice_weight(mask, slice(0, 2), "token") == pytest.approx(4 / 6)
    assert slice_weight(mask, slice(2, 4), "token") == pytest.approx(2 / 6)
    assert slice_weight(mask, slice(0, 2), "sequence") == pytest.approx(2 / 3)  # the empty row does not count
    assert slice_weight(mask, slice(2, 4), "sequence") == pytest.approx(1 / 3)


@pytest.mark.parametrize("aggregation", ["token", "sequence"])
def test_a_micro_batched_step_equals_the_whole_batch_step(tiny_setup, test_config, aggregation, monkeypatch):
    import nextrl.rl.training

    slices = []
    monkeypatch.setattr(
        nextrl.rl.training, "micro_batches", lambda *args: slices.append(micro_batches(*args)) or slices[-1]
    )
    rl = {**test_config["rl"], "aggregation": aggregation, "kl_coef": 0.05, "updates_per_batch": 2}
    batch = pd.read_parquet(tiny_setup["data"] / "train.parquet").iloc[:4]
    tokenizer = load_tokenizer(tiny_setup["base"])
    results = {}
    for budget in (None, 20):  # a prompt + completion here is ~8 tokens: 2 rows per slice
        model = attach_lora(load_model(tiny_setup["base"]), test_config["lora"], seed=0)
        start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        # plain SGD: the update is lr × the gradient, so float-order differences between the two ways of summing the
        # gradient stay at their own (relative ~1e-7) size; Adam's normalisation would magnify them on some CPUs
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        torch.manual_seed(0)  # the same rollouts for both
        backend = HFGenerateBackend(model, tokenizer, batch_size=64)
        metrics = grpo_step(model, optimizer, backend, make_scorer(test_config["task"]), batch,
                            {**rl, "micro_batch_tokens": budget})  # fmt: skip
        updates = {name: p.detach() - start[name] for name, p in model.named_parameters() if p.requires_grad}
        results[budget] = metrics, updates
    assert len(slices[0]) == 1 and len(slices[1]) >= 4  # the budget really cut the 16 rollouts
    (whole, whole_updates), (sliced, sliced_updates) = results[None], results[20]
    for key in ("loss", "kl", "entropy", "grad_norm", "reward_mean"):
        assert sliced[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-7), key
    total = torch.sqrt(sum(update.square().sum() for update in whole_updates.values()))
    assert total > 0  # the step moved the adapter
    for name, update in whole_updates.items():  # float32 sums in another order: relative 1e-5 of the whole update
        assert torch.linalg.vector_norm(sliced_updates[name] - update) <= 1e-5 * total, name
