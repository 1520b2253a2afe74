"""The runtime settings: a bf16 base on the CPU takes the same GRPO step as fp32 within a stated tolerance; CUDA
asked for without CUDA is an error naming the config key (``runtime.device`` or the key the caller names)."""

import pandas as pd
import pytest
import torch

from nextrl.models import load_model, load_tokenizer
from nextrl.rl.training import attach_lora, grpo_step
from nextrl.rollouts.generation import HFGenerateBackend, Rollouts
from nextrl.runtime import resolve_device, torch_device, training_model
from nextrl.tasks import make_scorer

BF16_ENTROPY_TOLERANCE = 0.01
"""Relative, on the step's mean token entropy (a function of every logit): bf16 keeps ~3 significant digits of the
base's activations; measured 7e-4. (The loss is no test: at the first update the ratio is exactly 1 in both.)"""
BF16_GRADIENT_COSINE = 0.98
"""The LoRA gradient of the bf16 step against the fp32 one (SGD, so the update is the gradient); measured 0.99991."""


class FixedRollouts:
    """A backend that returns the same rollouts whatever the model: both precisions score one batch."""

    def __init__(self, rollouts: Rollouts) -> None:
        self.rollouts = rollouts

    def sync(self) -> None:
        """The rollouts are fixed: nothing to serve."""

    def generate(self, prompts, num_samples, max_new_tokens, temperature) -> Rollouts:
        return self.rollouts


def test_a_bf16_base_takes_the_fp32_step_within_tolerance(tiny_setup, test_config):
    rl = {**test_config["rl"], "max_grad_norm": 1e9}
    batch = pd.read_parquet(tiny_setup["data"] / "train.parquet").iloc[:4]
    tokenizer = load_tokenizer(tiny_setup["base"])
    torch.manual_seed(0)
    rollouts = HFGenerateBackend(load_model(tiny_setup["base"]), tokenizer, 64).generate(
        batch["prompt"].tolist(), rl["group_size"], rl["max_new_tokens"], rl["temperature"]
    )
    steps = {}
    for dtype in ("float32", "bfloat16"):
        runtime = {"device": "cpu", "dtype": dtype, "gradient_checkpointing": dtype == "bfloat16"}
        base = training_model(tiny_setup["base"], runtime, torch.device("cpu"), full=False)
        model = attach_lora(base, test_config["lora"], seed=0)
        if dtype == "float32":
            model.float()
        trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        assert {p.dtype for p in trainable.values()} == {torch.float32}  # LoRA (and so AdamW) stays fp32
        before = {name: p.detach().clone() for name, p in trainable.items()}
        optimizer = torch.optim.SGD(list(trainable.values()), lr=1.0)
        metrics = grpo_step(model, optimizer, FixedRollouts(rollouts), make_scorer(test_config["task"]), batch, rl)
        steps[dtype] = metrics, torch.cat([(before[n] - p.detach()).flatten() for n, p in trainable.items()])
    (fp32, fp32_update), (bf16, bf16_update) = steps["float32"], steps["bfloat16"]
    assert bf16["entropy"] == pytest.approx(fp32["entropy"], rel=BF16_ENTROPY_TOLERANCE)
    assert bf16["entropy"] != fp32["entropy"]  # the base really ran in bf16
    assert fp32_update.norm() > 0
    cosine = torch.nn.functional.cosine_similarity(bf16_update, fp32_update, dim=0)
    assert cosine >= BF16_GRADIENT_COSINE, float(cosine)


def test_cuda_without_cuda_is_named_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"runtime.device: cuda, but torch finds no CUDA device"):
        resolve_device({"device": "cuda"})
    assert resolve_device({"device": "auto"}) == torch.device("cpu")
    assert resolve_device({"device": "cpu"}) == torch.device("cpu")


def test_torch_device_names_the_key_it_is_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"^extrapolators\.next\.device: cuda, but torch finds no CUDA device"):
        torch_device("cuda", "extrapolators.next.device")
    assert torch_device("auto", "extrapolators.next.device") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # with CUDA: cuda and auto both name it
    assert torch_device("cuda", "runtime.device") == torch.device("cuda")
    assert torch_device("auto", "runtime.device") == torch.device("cuda")
