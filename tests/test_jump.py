"""Extrapolate and select: candidates are exact rank-(r+1) adapters; the guard keeps α = 0 against a harmful jump."""

import numpy as np
import pandas as pd
import pytest
import torch
from peft import PeftModel

from nextrl.extrapolate import ExtrapolationError, write_candidates
from nextrl.extrapolator import ModuleDelta
from nextrl.models import load_model
from nextrl.rl_chunk import run_rl_chunk
from nextrl.select import choose, select_candidate
from nextrl.trajectory import load_adapter


@pytest.fixture(scope="module")
def trained(tiny_setup, tmp_path_factory):
    from tests.conftest import load_test_config

    output = tmp_path_factory.mktemp("jump") / "rl"
    run_rl_chunk(tiny_setup["base"], None, tiny_setup["data"], output, load_test_config(), seed=2, round_index=0)
    return output / "state" / "adapter"


def deltas_for(adapter_dir, sigma, seed=0):
    generator = np.random.default_rng(seed)
    deltas = {}
    for module, (b, a) in load_adapter(adapter_dir).factors.items():
        u = generator.normal(size=(b.shape[0], 1)).astype(np.float32)
        v = generator.normal(size=(a.shape[1], 1)).astype(np.float32)
        deltas[module] = ModuleDelta(u / np.linalg.norm(u), np.array([sigma], np.float32), v / np.linalg.norm(v))
    return deltas


def merged(base_dir, adapter_dir):
    model = PeftModel.from_pretrained(load_model(base_dir), adapter_dir).merge_and_unload()
    return {name: p.detach() for name, p in model.named_parameters()}


def test_candidate_equals_w_t_plus_alpha_delta(tiny_setup, trained, tmp_path):
    deltas = deltas_for(trained, sigma=0.05)
    table = write_candidates(trained, deltas, [1.5], tmp_path / "candidates")
    assert list(table["alpha"]) == [0.0, 1.5]
    unjumped = merged(tiny_setup["base"], trained)
    jumped = merged(tiny_setup["base"], tmp_path / "candidates" / "alpha_1.5")
    zero = merged(tiny_setup["base"], tmp_path / "candidates" / "alpha_0")
    for module, delta in deltas.items():
        name = module.removeprefix("base_model.model.") + ".weight"
        expected = unjumped[name] + 1.5 * torch.from_numpy(delta.sigma[0] * delta.u @ delta.v.T)
        assert torch.allclose(jumped[name], expected, atol=1e-6), name
        assert torch.allclose(zero[name], unjumped[name], atol=1e-6), name


def test_non_finite_delta_and_empty_grid_are_refused(trained, tmp_path):
    deltas = deltas_for(trained, sigma=0.05)
    module = next(iter(deltas))
    deltas[module] = ModuleDelta(deltas[module].u * np.nan, deltas[module].sigma, deltas[module].v)
    with pytest.raises(ExtrapolationError, match=f"module {module} is not finite"):
        write_candidates(trained, deltas, [1.0], tmp_path / "candidates")
    with pytest.raises(ExtrapolationError, match="next.alphas: the α grid is empty"):
        write_candidates(trained, deltas_for(trained, 0.05), [], tmp_path / "candidates")
    assert not (tmp_path / "candidates").exists()


def test_choose_prefers_accuracy_then_smaller_alpha():
    scores = pd.DataFrame({"alpha": [0.0, 1.0, 2.0], "accuracy": [0.5, 0.7, 0.7]})
    assert choose(scores) == 1.0
    assert choose(pd.DataFrame({"alpha": [0.0, 1.0], "accuracy": [0.4, 0.4]})) == 0.0


def test_guard_keeps_alpha_zero_against_a_harmful_jump(tiny_setup, trained, test_config, tmp_path):
    harmful = deltas_for(trained, sigma=500.0)
    write_candidates(trained, harmful, [1.0, 2.0], tmp_path / "candidates")
    test_config["task"]["sizes"]["validation"] = 60
    scores = select_candidate(tiny_setup["base"], tmp_path / "candidates", tiny_setup["data"], test_config, tmp_path / "selected")
    assert scores.loc[scores["selected"], "alpha"].tolist() == [0.0]
    assert (scores.loc[scores["alpha"] > 0, "accuracy"] <= scores.loc[scores["alpha"] == 0, "accuracy"].iloc[0]).all()
    next_start = {name: p.detach() for name, p in load_model(tmp_path / "selected" / "model").named_parameters()}
    unjumped = merged(tiny_setup["base"], trained)
    for name, weight in unjumped.items():
        assert torch.allclose(next_start[name], weight, atol=1e-6), name
