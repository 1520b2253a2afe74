"""The vLLM plumbing against a fake engine with vLLM's interface: adapter versions, sampling parameters, rollouts
with the sampler's log-probs, one generate for every (candidate, prompt) pair, LoRA slot sizes; and the clear error
where vLLM is not installed (CI has none)."""

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nextrl.models import load_tokenizer
from nextrl.rollouts.generation import Rollouts
from nextrl.rollouts.vllm_engine import (
    VLLMApi,
    VLLMBackend,
    VLLMError,
    engine_options,
    lora_slot,
    score_candidates,
    vllm_api,
    vllm_installed,
)  # fmt: skip


@dataclass(frozen=True)
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class FakeEngine:
    """Answers every prompt with "12" then EOS; the log-prob of position p is −0.1·(p + 1)."""

    eos: int
    encode: object
    calls: list = field(default_factory=list)

    def generate(self, prompts, params, lora_request=None):
        self.calls.append((list(prompts), params, lora_request))
        tokens = [*self.encode("12"), self.eos]
        sample = SimpleNamespace(
            token_ids=tokens, text="12",
            logprobs=[{token: SimpleNamespace(logprob=-0.1 * (p + 1))} for p, token in enumerate(tokens)],
        )  # fmt: skip
        return [SimpleNamespace(outputs=[sample] * params.n) for _ in prompts]


def fake_api() -> VLLMApi:
    return VLLMApi(LLM=None, SamplingParams=lambda **kw: SimpleNamespace(**kw), LoRARequest=FakeLoRARequest)


@pytest.fixture
def tokenizer(tiny_setup):
    return load_tokenizer(tiny_setup["base"])


def test_every_sync_serves_a_new_adapter_version(tokenizer, tmp_path):
    engine = FakeEngine(tokenizer.eos_token_id, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    saved = []
    backend = VLLMBackend(fake_api(), engine, tokenizer, saved.append, tmp_path, seed=7)
    with pytest.raises(VLLMError, match="generate before sync"):
        backend.generate(["1+1="], 2, 4, 1.0)
    requests = []
    for _ in range(2):
        backend.sync()
        backend.generate(["1+1=", "2+3="], 3, 4, 1.0)
        requests.append(engine.calls[-1][2])
    assert [r.lora_name for r in requests] == ["policy-v1", "policy-v2"]
    assert [r.lora_int_id for r in requests] == [1, 2]
    assert [Path(r.lora_path) for r in requests] == saved == [tmp_path / "v1", tmp_path / "v2"]
    params = engine.calls[-1][1]
    assert (params.n, params.temperature, params.max_tokens, params.logprobs) == (3, 1.0, 4, 0)
    assert [call[1].seed for call in engine.calls] == [8, 9]  # seeded per step


def test_rollouts_carry_the_samplers_logprobs_up_to_eos(tokenizer, tmp_path):
    engine = FakeEngine(tokenizer.eos_token_id, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    backend = VLLMBackend(fake_api(), engine, tokenizer, lambda path: None, tmp_path, seed=0)
    backend.sync()
    rollouts = backend.generate(["1+1=", "12+3="], 2, 5, 1.0)
    assert rollouts.texts == ["12"] * 4 and rollouts.completion_ids.shape == (4, 5)
    assert rollouts.completion_mask[0].tolist() == [1, 1, 1, 0, 0]  # "1", "2", EOS; then padding
    assert rollouts.sampler_logprobs[0, :3].tolist() == pytest.approx([-0.1, -0.2, -0.3])
    assert rollouts.prompt_ids.shape[0] == 4 and rollouts.prompt_mask[0, 0] == 0  # left-padded like the HF backend
    assert torch.equal(rollouts.rows(slice(1, 3)).sampler_logprobs, rollouts.sampler_logprobs[1:3])


def test_candidates_are_scored_in_one_generate_with_one_request_each(tokenizer):
    engine = FakeEngine(tokenizer.eos_token_id, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    candidates = {"alpha_0": Path("c/alpha_0"), "alpha_1": Path("c/alpha_1"), "alpha_2": Path("c/alpha_2")}
    texts = score_candidates(fake_api(), engine, candidates, ["1+1=", "2+2="], max_new_tokens=4)
    assert len(engine.calls) == 1
    prompts, params, requests = engine.calls[0]
    assert prompts == ["1+1=", "2+2="] * 3 and params.temperature == 0.0
    assert [r.lora_name for r in requests] == ["alpha_0"] * 2 + ["alpha_1"] * 2 + ["alpha_2"] * 2
    assert sorted({r.lora_int_id for r in requests}) == [1, 2, 3]
    assert texts == {name: ["12", "12"] for name in candidates}


def test_lora_slots_and_engine_options():
    assert [lora_slot(rank) for rank in (1, 2, 8, 9, 64, 65, 320, 321)] == [1, 8, 8, 16, 64, 128, 320, 512]
    with pytest.raises(VLLMError, match="lora.r: rank 513 exceeds"):
        lora_slot(513)
    options = engine_options([65, 65, 65], memory_fraction=0.3, seed=1)
    assert (options["max_loras"], options["max_lora_rank"], options["max_cpu_loras"]) == (3, 128, 3)


@pytest.mark.skipif(vllm_installed(), reason="vLLM is installed here: the missing-vLLM error cannot be shown")
def test_vllm_missing_is_named():
    with pytest.raises(VLLMError, match="rollout.backend: vllm is not installed"):
        vllm_api()


def test_candidate_accuracies_score_every_adapter_from_one_generate(tokenizer):
    import pandas as pd

    from nextrl.rollouts.vllm_engine import candidate_accuracies

    engine = FakeEngine(tokenizer.eos_token_id, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    items = pd.DataFrame({"prompt": ["5+7=", "6+6=", "1+1="], "entry": ["12", "12", "2"]})
    table = candidate_accuracies(fake_api(), engine, {"alpha_0": Path("a0"), "alpha_1": Path("a1")}, items,
                                 lambda text, entry: float(text == entry), max_new_tokens=4)  # fmt: skip
    assert len(engine.calls) == 1
    assert table["name"].tolist() == ["alpha_0", "alpha_1"] and table["accuracy"].tolist() == pytest.approx([2 / 3] * 2)
    assert table["n_items"].tolist() == [3, 3]


needs_gpu_vllm = pytest.mark.skipif(
    not (torch.cuda.is_available() and vllm_installed()), reason="needs CUDA and vLLM (the `gpu` extra); CI has neither"
)


@needs_gpu_vllm
def test_real_engine_matches_the_trainer_and_follows_updates(tiny_setup, test_config, tmp_path):
    """docs/gpu.md's smoke check on the real engine: the served adapter's sampled-token log-probs agree with the
    trainer's
    (mean |Δ log p| < 1e-2), and the rollouts change after one update."""
    from nextrl.models import load_model
    from nextrl.rl.loss import token_logprobs
    from nextrl.rl.training import attach_lora, completion_logits

    api = vllm_api()
    tokenizer = load_tokenizer(tiny_setup["base"])
    model = attach_lora(load_model(tiny_setup["base"]).cuda(), test_config["lora"], seed=0)
    engine = api.LLM(model=str(tiny_setup["base"]), **engine_options([test_config["lora"]["r"]], 0.3, 0))
    backend = VLLMBackend(api, engine, tokenizer, model.save_pretrained, tmp_path, seed=0)
    with torch.no_grad():
        for weight in (p for n, p in model.named_parameters() if "lora_B" in n):
            weight.normal_(std=0.05)  # a non-trivial adapter
    backend.sync()
    rollouts = backend.generate(["3+4=", "12+9="], 8, 4, 1.0)
    rollouts = Rollouts(*(t.cuda() if isinstance(t, torch.Tensor) else t for t in vars(rollouts).values()))
    with torch.no_grad():
        trainer = token_logprobs(completion_logits(model, rollouts), rollouts.completion_ids, 1.0)
    gap = (
        (trainer - rollouts.sampler_logprobs).abs() * rollouts.completion_mask
    ).sum() / rollouts.completion_mask.sum()
    assert float(gap) < 1e-2
    before = backend.generate(["3+4="] * 4, 8, 4, 1.0).completion_ids
    with torch.no_grad():
        for weight in (p for n, p in model.named_parameters() if "lora_B" in n):
            weight.add_(torch.randn_like(weight), alpha=0.5)
    backend.sync()
    backend.seed -= 1  # the same sampling seed as `before`: only the weights differ
    assert not torch.equal(backend.generate(["3+4="] * 4, 8, 4, 1.0).completion_ids, before)
