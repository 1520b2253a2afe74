"""Jumps: candidates are exact rank-(r+k) adapters, the guard keeps α = 0 against a harmful jump, and a carried-over
jump with α = 0 continues exactly as plain RL (adapters, metrics and evaluations bit-identical)."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from nextrl.lowrank.adapters import load_adapter, load_offset, save_offset
from nextrl.lowrank.jumps import JumpError, alpha_grid, choose, write_candidates
from nextrl.models import load_model
from nextrl.rl.chunk_layout import TIMING_COLUMNS
from nextrl.stages import rl_chunk, select


@pytest.fixture(scope="module")
def round0(tiny_setup, tmp_path_factory):
    from tests.conftest import load_test_config

    output = tmp_path_factory.mktemp("jump") / "rl"
    rl_chunk.run(load_test_config(), start_model=tiny_setup["base"], resume=None, jump_selection=None,
                 data=tiny_setup["data"], output=output, seed=2, round_index=0)  # fmt: skip
    return output


def random_jump(adapter_dir, sigma, seed=0):
    """A rank-1 unit-direction jump of size σ per module: (σ·u, vᵀ)."""
    generator = np.random.default_rng(seed)
    jump = {}
    for module, (b, a) in load_adapter(adapter_dir).factors.items():
        u = torch.from_numpy(generator.normal(size=(b.shape[0], 1)).astype(np.float32))
        v = torch.from_numpy(generator.normal(size=(1, a.shape[1])).astype(np.float32))
        jump[module] = (sigma * u / u.norm(), v / v.norm())
    return jump


def candidates_dir(round0, jump, alphas, directory):
    directory.mkdir()
    table = write_candidates(load_adapter(round0 / "state" / "adapter"), jump, alphas, directory)
    save_offset(jump, directory / "jump.safetensors")
    table.to_parquet(directory / "candidates.parquet", index=False)
    return table


def merged(base_dir, adapter_dir):
    model = PeftModel.from_pretrained(load_model(base_dir), adapter_dir).merge_and_unload()
    return {name: p.detach() for name, p in model.named_parameters()}


def test_candidate_equals_w_t_plus_alpha_delta(tiny_setup, round0, tmp_path):
    jump = random_jump(round0 / "state" / "adapter", sigma=0.05)
    table = candidates_dir(round0, jump, [1.5], tmp_path / "candidates")
    assert list(table["alpha"]) == [0.0, 1.5]
    unjumped = merged(tiny_setup["base"], round0 / "state" / "adapter")
    jumped = merged(tiny_setup["base"], tmp_path / "candidates" / "alpha_1.5")
    zero = merged(tiny_setup["base"], tmp_path / "candidates" / "alpha_0")
    for module, (left, right) in jump.items():
        name = module.removeprefix("base_model.model.") + ".weight"
        assert torch.allclose(jumped[name], unjumped[name] + 1.5 * left @ right, atol=1e-6), name
        assert torch.allclose(zero[name], unjumped[name], atol=1e-6), name
    # ‖α·ΔŴ‖_F over modules: each module's jump has norm σ = 0.05
    assert table["delta_frob"].iloc[1] == pytest.approx(1.5 * 0.05 * len(jump) ** 0.5, rel=1e-5)


def test_non_finite_delta_and_empty_grid_are_refused(round0):
    adapter = load_adapter(round0 / "state" / "adapter")
    jump = random_jump(round0 / "state" / "adapter", sigma=0.05)
    module = next(iter(jump))
    jump[module] = (jump[module][0] * float("nan"), jump[module][1])
    with pytest.raises(JumpError, match=f"module {module} is not finite"):
        write_candidates(adapter, jump, [1.0], round0 / "never")
    with pytest.raises(JumpError, match="jump.alphas: the α grid is empty"):
        alpha_grid([])
    assert not (round0 / "never").exists()


def test_choose_prefers_accuracy_then_smaller_alpha():
    assert choose(pd.DataFrame({"alpha": [0.0, 1.0, 2.0], "accuracy": [0.5, 0.7, 0.7]})) == 1.0
    assert choose(pd.DataFrame({"alpha": [0.0, 1.0], "accuracy": [0.4, 0.4]})) == 0.0


def run_round1(config, tiny_setup, round0, output, start_model, jump_selection):
    rl_chunk.run(config, start_model=start_model, resume=round0, jump_selection=jump_selection,
                 data=tiny_setup["data"], output=output, seed=2, round_index=1)  # fmt: skip


def test_carried_over_jump_with_alpha_zero_is_bit_identical_to_plain_rl(tiny_setup, round0, test_config, tmp_path):
    harmful = random_jump(round0 / "state" / "adapter", sigma=500.0)
    candidates_dir(round0, harmful, [1.0, 2.0], tmp_path / "candidates")
    select.run(test_config, start_model=tiny_setup["base"], start_offset=None, adapter=round0 / "state" / "adapter",
               candidates=tmp_path / "candidates", data=tiny_setup["data"], output=tmp_path / "selected")  # fmt: skip
    scores = pd.read_parquet(tmp_path / "selected" / "selection.parquet")
    assert scores.loc[scores["selected"], "alpha"].tolist() == [0.0]
    assert (scores.loc[scores["alpha"] > 0, "accuracy"] <= scores["accuracy"].iloc[0]).all()
    assert load_offset(tmp_path / "selected" / "offset.safetensors") == {}

    run_round1(test_config, tiny_setup, round0, tmp_path / "none1", tiny_setup["base"], None)
    run_round1(test_config, tiny_setup, round0, tmp_path / "jump1", tmp_path / "selected" / "model",
               tmp_path / "selected" / "selection.parquet")  # fmt: skip
    for relative in [
        "state/adapter/adapter_model.safetensors",
        *[f"snapshots/step_{s}/adapter_model.safetensors" for s in (5, 8)],
    ]:
        plain, jumped = load_file(tmp_path / "none1" / relative), load_file(tmp_path / "jump1" / relative)
        assert plain.keys() == jumped.keys()
        assert all(torch.equal(plain[key], jumped[key]) for key in plain), relative
    for table in ("metrics.parquet", "eval.parquet"):
        plain, jumped = (pd.read_parquet(tmp_path / run / table) for run in ("none1", "jump1"))
        pd.testing.assert_frame_equal(
            plain.drop(columns=list(TIMING_COLUMNS), errors="ignore"),
            jumped.drop(columns=list(TIMING_COLUMNS), errors="ignore"),
        )
    assert list(pd.read_parquet(tmp_path / "jump1" / "eval.parquet")["step"]) == [5, 6, 7, 8]  # no restart evaluation


def test_carried_over_jump_folds_only_alpha_delta_and_keeps_the_lora(tiny_setup, round0, test_config, tmp_path):
    jump = random_jump(round0 / "state" / "adapter", sigma=1e-3)
    candidates_dir(round0, jump, [2.0], tmp_path / "candidates")
    scores = pd.DataFrame({"alpha": [0.0, 2.0], "accuracy": [0.1, 0.9]})
    select_with(test_config, tiny_setup, round0, tmp_path, scores)
    base = {name: p.detach() for name, p in load_model(tiny_setup["base"]).named_parameters()}
    folded = {name: p.detach() for name, p in load_model(tmp_path / "selected" / "model").named_parameters()}
    for module, (left, right) in jump.items():
        name = module.removeprefix("base_model.model.") + ".weight"
        assert torch.allclose(folded[name], base[name] + 2.0 * left @ right, atol=1e-7), name
    untouched = set(base) - {module.removeprefix("base_model.model.") + ".weight" for module in jump}
    assert all(torch.equal(folded[name], base[name]) for name in untouched)
    offset = load_offset(tmp_path / "selected" / "offset.safetensors")
    assert all(torch.allclose(offset[m][0] @ offset[m][1], 2.0 * left @ right) for m, (left, right) in jump.items())

    run_round1(test_config, tiny_setup, round0, tmp_path / "jump1", tmp_path / "selected" / "model",
               tmp_path / "selected" / "selection.parquet")  # fmt: skip
    evaluations = pd.read_parquet(tmp_path / "jump1" / "eval.parquet")
    assert list(evaluations["step"]) == [4, 5, 6, 7, 8]  # the jumped start is evaluated
    # the LoRA continued: its first snapshot differs from round 0's final adapter by one step, not from zero
    resumed = load_file(round0 / "state" / "adapter" / "adapter_model.safetensors")
    first = load_file(tmp_path / "jump1" / "snapshots" / "step_5" / "adapter_model.safetensors")
    key = next(k for k in first if "lora_B" in k)
    assert 0 < float((first[key] - resumed[key]).abs().max()) < float(resumed[key].abs().max())


def select_with(config, tiny_setup, round0, tmp_path, scores, monkeypatch=None):
    """Run select with fixed scores (the choice is tested above; here only what follows it)."""
    import nextrl.rollouts.accuracy as evaluation
    import nextrl.stages.select as stage

    real = evaluation.evaluate_model
    accuracies = iter(scores["accuracy"])

    def fixed(model, tokenizer, items, scorer, evaluation, description):
        scored = real(model, tokenizer, items.head(1), scorer, evaluation, description)
        return scored.assign(reward=next(accuracies))

    evaluation.evaluate_model = fixed
    try:
        stage.run(config, start_model=tiny_setup["base"], start_offset=None, adapter=round0 / "state" / "adapter",
                  candidates=tmp_path / "candidates", data=tiny_setup["data"],
                  output=tmp_path / "selected")  # fmt: skip
    finally:
        evaluation.evaluate_model = real


def test_fresh_continuation_merges_the_adapter_and_restarts_it(tiny_setup, round0, test_config, tmp_path):
    fresh = copy.deepcopy(test_config)
    fresh["jump"]["continuation"] = "fresh"
    jump = random_jump(round0 / "state" / "adapter", sigma=1e-3)
    candidates_dir(round0, jump, [1.0], tmp_path / "candidates")
    select_with(fresh, tiny_setup, round0, tmp_path, pd.DataFrame({"alpha": [0.0, 1.0], "accuracy": [0.5, 0.5]}))
    unjumped = merged(tiny_setup["base"], round0 / "state" / "adapter")
    start = {name: p.detach() for name, p in load_model(tmp_path / "selected" / "model").named_parameters()}
    assert all(torch.allclose(start[name], unjumped[name], atol=1e-6) for name in unjumped)
    run_round1(fresh, tiny_setup, round0, tmp_path / "fresh1", tmp_path / "selected" / "model",
               tmp_path / "selected" / "selection.parquet")  # fmt: skip
    assert list(pd.read_parquet(tmp_path / "fresh1" / "eval.parquet")["step"])[0] == 4
    first = load_file(tmp_path / "fresh1" / "snapshots" / "step_5" / "adapter_model.safetensors")
    resumed = load_file(round0 / "state" / "adapter" / "adapter_model.safetensors")
    key = next(k for k in first if "lora_B" in k)
    assert float(first[key].abs().max()) < float(resumed[key].abs().max())  # a new LoRA: B restarted near zero
