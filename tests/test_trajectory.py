"""Trajectory exactness on snapshots the project produced, against the dense SVD of the merged delta."""

import json
import shutil

import pandas as pd
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from nextrl.lowrank import dense_triplets
from nextrl.models import load_model
from nextrl.rl_chunk import run_rl_chunk
from nextrl.trajectory import TRAJECTORY_SCHEMA, TrajectoryError, extract_trajectory, load_adapter


@pytest.fixture(scope="module")
def round_dir(tiny_setup, tmp_path_factory):
    from tests.conftest import load_test_config

    output = tmp_path_factory.mktemp("round") / "rl"
    run_rl_chunk(tiny_setup["base"], None, tiny_setup["data"], output, load_test_config(), seed=1, round_index=0)
    return output


def merged_weights(base_dir, adapter_dir):
    """W_t of every weight from peft's own dense merge — the reference the factorized path must match."""
    model = PeftModel.from_pretrained(load_model(base_dir), adapter_dir).merge_and_unload()
    return {name: p.detach().double() for name, p in model.named_parameters()}


def exact_delta(round_dir, module, kind, step, steps, horizon):
    """The delta in fp64 from the adapter factors: s·(B_new A_new − B_old A_old)."""

    def product(at_step):
        if at_step is None:
            return 0.0
        adapter = load_adapter(round_dir / "snapshots" / f"step_{at_step}")
        b, a = adapter.factors[module]
        return adapter.scale * b.double() @ a.double()

    index = steps.index(step)
    new, old = {
        "global": (step, None),
        "local": (step, steps[index - 1] if index else None),
        "target": (step + horizon, step),
    }[kind]
    return product(new) - product(old)


def test_every_triplet_equals_the_dense_svd_of_the_merged_delta(tiny_setup, round_dir, tmp_path):
    output = tmp_path / "trajectory.parquet"
    extract_trajectory(round_dir / "snapshots", output, round_index=0, horizon=2, triplets=2)
    table = pd.read_parquet(output)
    assert pd.api.types.is_integer_dtype(table["step"]) and set(table["kind"]) == {"global", "local", "target"}
    assert [f.name for f in TRAJECTORY_SCHEMA] == list(table.columns)
    base = {name: p.detach().double() for name, p in load_model(tiny_setup["base"]).named_parameters()}
    steps = sorted(table["step"].unique())
    merged = {step: merged_weights(tiny_setup["base"], round_dir / "snapshots" / f"step_{step}") for step in steps}
    checked = 0
    for (module, step, kind), rows in table.groupby(["module", "step", "kind"]):
        name = module.removeprefix("base_model.model.") + ".weight"
        weights = {s: merged[s][name] for s in steps}
        start = base[name]
        index = steps.index(step)
        delta = {
            "global": weights[step] - start,
            "local": weights[step] - (weights[steps[index - 1]] if index else start),
            "target": weights[step + 2] - weights[step] if step + 2 in weights else None,
        }[kind]
        reference = dense_triplets(delta.float(), 2)
        rows = rows.sort_values("k")
        for k, row in enumerate(rows.itertuples()):
            assert row.sigma == pytest.approx(float(reference.sigma[k]), abs=1e-5)
            if float(reference.sigma[k]) > 1e-4 and (k == 0 or float(reference.sigma[k - 1] - reference.sigma[k]) > 1e-4):
                assert torch.allclose(torch.tensor(row.u), reference.u[:, k], atol=1e-5)
                assert torch.allclose(torch.tensor(row.v), reference.v[:, k], atol=1e-5)
        # E1 sums every singular value, so the fp32 rounding floor of the merged weights (~1e-6 per value)
        # would bias it; its reference is the same delta computed in fp64 from the adapter factors.
        exact = exact_delta(round_dir, module, kind, step, steps, horizon=2)
        exact_reference = dense_triplets(exact, 2)
        assert rows["energy_ratio"].iloc[0] == pytest.approx(exact_reference.energy_ratio, abs=1e-5)
        assert rows["frob_norm"].iloc[0] == pytest.approx(float(torch.linalg.norm(exact)), abs=1e-5)
        assert float(torch.linalg.norm(exact - delta)) < 1e-5
        checked += 1
    assert checked == table["module"].nunique() * (2 * len(steps) + sum(1 for s in steps if s + 2 in merged))


def test_too_few_snapshots_for_the_horizon(round_dir, tmp_path):
    with pytest.raises(TrajectoryError, match="fewer snapshots than the horizon needs"):
        extract_trajectory(round_dir / "snapshots", tmp_path / "t.parquet", 0, horizon=40, triplets=1)
    assert not (tmp_path / "t.parquet").exists()


def test_mismatched_snapshots_are_rejected(round_dir, tmp_path):
    snapshots = tmp_path / "snapshots"
    shutil.copytree(round_dir / "snapshots", snapshots)
    broken = snapshots / "step_3" / "adapter_model.safetensors"
    weights = load_file(broken)
    key = next(k for k in weights if "lora_A" in k)
    weights[key] = torch.zeros(weights[key].shape[0], weights[key].shape[1] + 1)
    save_file(weights, broken)
    with pytest.raises(TrajectoryError, match=r"step_3: module .* has shape"):
        extract_trajectory(snapshots, tmp_path / "t.parquet", 0, horizon=2, triplets=1)
    del weights[key]
    save_file(weights, broken)
    with pytest.raises(TrajectoryError, match="step_3"):
        extract_trajectory(snapshots, tmp_path / "t.parquet", 0, horizon=2, triplets=1)
    assert not (tmp_path / "t.parquet").exists()
