"""Trajectory exactness on snapshots the project produced (against dense SVDs of merged deltas), the offset and
round kinds, and signs consistent along the trajectory (docs/method.md, "Departures from the reference code")."""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from nextrl.lowrank.adapters import Adapter, AdapterError, load_snapshots
from nextrl.lowrank.dense_weights import save_dense_snapshot
from nextrl.lowrank.svd import dense_triplets
from nextrl.lowrank.trajectory_table import TRAJECTORY_SCHEMA, TrajectoryError, trajectory_table
from nextrl.models import load_model
from nextrl.rl.training import full_parameter_model
from nextrl.stages import rl_chunk, trajectory

HORIZON = 2


@pytest.fixture(scope="module")
def round_dir(tiny_setup, tmp_path_factory):
    from tests.conftest import load_test_config

    output = tmp_path_factory.mktemp("round") / "rl"
    rl_chunk.run(load_test_config(), start_model=tiny_setup["base"], resume=None, jump_selection=None,
                 data=tiny_setup["data"], output=output, seed=1, round_index=0)  # fmt: skip
    return output


def merged_weights(base_dir, adapter_dir):
    """W_t of every weight from peft's own dense merge — the reference the factorized path must match."""
    model = PeftModel.from_pretrained(load_model(base_dir), adapter_dir).merge_and_unload()
    return {name: p.detach().double() for name, p in model.named_parameters()}


def test_every_triplet_equals_the_dense_svd_of_the_merged_delta(tiny_setup, round_dir, test_config, tmp_path):
    test_config["jump"].update(horizon=HORIZON, triplets=2)
    output = tmp_path / "trajectory.parquet"
    trajectory.run(
        test_config, snapshots=round_dir / "snapshots", start_adapter=None, offset=None, output=output, round_index=0
    )
    table = pd.read_parquet(output)
    assert [f.name for f in TRAJECTORY_SCHEMA] == list(table.columns)
    assert set(table["kind"]) == {"global", "local", "target", "round"} and set(table["start_step"]) == {0}
    base = {name: p.detach().double() for name, p in load_model(tiny_setup["base"]).named_parameters()}
    steps = sorted(table["step"].unique())
    merged = {step: merged_weights(tiny_setup["base"], round_dir / "snapshots" / f"step_{step}") for step in steps}
    checked = 0
    for (module, step, kind), rows in table.groupby(["module", "step", "kind"]):
        name = module.removeprefix("base_model.model.") + ".weight"
        weights = {s: merged[s][name] for s in steps}
        index = steps.index(step)
        delta = {
            "global": weights[step] - base[name],
            "round": weights[step] - base[name],
            "local": weights[step] - (weights[steps[index - 1]] if index else base[name]),
            "target": weights[step + HORIZON] - weights[step] if step + HORIZON in weights else None,
        }[kind]
        rows = rows.sort_values("k")
        reference = dense_triplets(delta.float(), len(rows))
        sigma = [float("inf"), *reference.sigma.tolist(), 0.0]
        for k, row in enumerate(rows.itertuples()):
            assert row.sigma == pytest.approx(sigma[k + 1], abs=1e-5)
            separated = min(sigma[k] - sigma[k + 1], sigma[k + 1] - sigma[k + 2]) > 1e-3  # a well-defined direction
            if sigma[k + 1] > 1e-4 and separated:
                # signs are aligned along the trajectory, so compare the sign-free product u vᵀ
                product = torch.outer(torch.tensor(row.u), torch.tensor(row.v))
                assert torch.allclose(product, torch.outer(reference.u[:, k], reference.v[:, k]), atol=1e-5)
        assert rows["frob_norm"].iloc[0] == pytest.approx(float(torch.linalg.norm(delta)), abs=1e-5)
        checked += 1
    assert checked == table["module"].nunique() * (2 * len(steps) + sum(1 for s in steps if s + HORIZON in merged) + 1)
    # the round kind keeps every triplet of W_T − W_start: its rank-k sum is the whole delta
    round_rows = table[table["kind"] == "round"]
    for module, rows in round_rows.groupby("module"):
        name = module.removeprefix("base_model.model.") + ".weight"
        rebuilt = sum(row.sigma * np.outer(row.u, row.v) for row in rows.itertuples())
        assert np.allclose(rebuilt, (merged[steps[-1]][name] - base[name]).numpy(), atol=1e-5)


def synthetic_adapters(steps, rotate, seed=0, shape=(12, 10), rank=3):
    """Adapters W_t = B_t A_t (scale 1) whose top direction rotates by ``rotate`` radians per step and grows."""
    generator = np.random.default_rng(seed)
    qu = np.linalg.qr(generator.standard_normal((shape[0], rank + 1)))[0]
    qv = np.linalg.qr(generator.standard_normal((shape[1], rank + 1)))[0]
    adapters = {}
    for t in steps:
        u = np.cos(rotate * t) * qu[:, 0] + np.sin(rotate * t) * qu[:, rank]
        v = np.cos(rotate * t) * qv[:, 0] + np.sin(rotate * t) * qv[:, rank]
        b = np.stack([t * u, 0.1 * qu[:, 1], 0.05 * t * qu[:, 2]], axis=1)
        a = np.stack([v, qv[:, 1], qv[:, 2]], axis=0)
        # random per-column signs of the factors: what independent SVDs or training would hand us
        flips = generator.choice([-1.0, 1.0], size=rank)
        adapters[t] = Adapter(
            {"m": (torch.tensor(b * flips, dtype=torch.float32), torch.tensor((a.T * flips).T, dtype=torch.float32))},
            1.0,
            {},
        )
    return adapters


def flipped_pairs(table: pd.DataFrame) -> tuple[int, int]:
    """(flips, pairs): consecutive same-module, same-kind top triplets pointing the same way (|cos u| > 0.3)
    but stored with opposite signs (u·u_prev + v·v_prev < 0)."""
    flips = pairs = 0
    for _, rows in table[table["k"] == 0].groupby(["module", "kind"]):
        rows = rows.sort_values("step")
        for previous, current in zip(rows.itertuples(), rows.iloc[1:].itertuples()):
            u_prev, u = np.asarray(previous.u), np.asarray(current.u)
            if abs(u_prev @ u) > 0.3:
                pairs += 1
                flips += (u_prev @ u + np.asarray(previous.v) @ np.asarray(current.v)) < 0
    return flips, pairs


def test_no_sign_flips_along_a_synthetic_rotating_trajectory():
    steps = list(range(1, 21))
    table = trajectory_table(
        synthetic_adapters(steps, rotate=0.08), None, None, 0, 0, horizon=3, triplets=1
    ).to_pandas()
    flips, pairs = flipped_pairs(table)
    assert pairs >= 50 and flips == 0


def test_no_sign_flips_along_real_snapshots(round_dir, test_config):
    table = trajectory_table(
        load_snapshots(round_dir / "snapshots"), None, None, 0, 0, horizon=1, triplets=1
    ).to_pandas()
    flips, pairs = flipped_pairs(table)
    assert pairs > 0 and flips == 0


def test_global_deltas_include_the_offset_exactly():
    steps = [1, 2, 3]
    adapters = synthetic_adapters(steps, rotate=0.3)
    generator = np.random.default_rng(5)
    left = torch.tensor(generator.standard_normal((12, 2)), dtype=torch.float32)
    right = torch.tensor(generator.standard_normal((2, 10)), dtype=torch.float32)
    table = trajectory_table(adapters, None, {"m": (left, right)}, 1, 0, horizon=1, triplets=3).to_pandas()
    for step in steps:
        b, a = adapters[step].factors["m"]
        expected = dense_triplets((left @ right + b @ a).double(), 3)
        rows = table[(table["kind"] == "global") & (table["step"] == step)].sort_values("k")
        assert np.allclose(rows["sigma"], expected.sigma.numpy(), atol=1e-5)
        local = table[(table["kind"] == "local") & (table["step"] == step)]
        assert local["frob_norm"].iloc[0] == pytest.approx(
            float(
                torch.linalg.norm(
                    b @ a - (adapters[step - 1].factors["m"][0] @ adapters[step - 1].factors["m"][1] if step > 1 else 0)
                )
            ),
            rel=1e-5,
        )


def test_too_few_snapshots_for_the_horizon(round_dir, test_config, tmp_path):
    test_config["jump"]["horizon"] = 40
    with pytest.raises(TrajectoryError, match="fewer snapshots than the horizon needs"):
        trajectory.run(test_config, snapshots=round_dir / "snapshots", start_adapter=None, offset=None,
                       output=tmp_path / "t.parquet", round_index=0)  # fmt: skip
    assert not (tmp_path / "t.parquet").exists()


def test_mismatched_snapshots_are_rejected(round_dir, test_config, tmp_path):
    snapshots = tmp_path / "snapshots"
    shutil.copytree(round_dir / "snapshots", snapshots)
    broken = snapshots / "step_3" / "adapter_model.safetensors"
    weights = load_file(broken)
    key = next(k for k in weights if "lora_A" in k)
    weights[key] = torch.zeros(weights[key].shape[0], weights[key].shape[1] + 1)
    save_file(weights, broken)

    def run():
        trajectory.run(
            test_config,
            snapshots=snapshots,
            start_adapter=None,
            offset=None,
            output=tmp_path / "t.parquet",
            round_index=0,
        )

    with pytest.raises(TrajectoryError, match=r"step_3: module .* has shape"):
        run()
    del weights[key]
    save_file(weights, broken)
    with pytest.raises(ValueError, match="step_3"):
        run()
    assert not (tmp_path / "t.parquet").exists()


def test_dense_trajectory_of_merged_snapshots_equals_the_factored_one(tiny_setup, round_dir, test_config, tmp_path):
    """Full-parameter mode's dense path, fed LoRA snapshots merged by peft, gives the factored path's triplets."""
    test_config["jump"]["horizon"] = HORIZON
    common = {"start_adapter": None, "offset": None, "round_index": 0}
    trajectory.run(test_config, snapshots=round_dir / "snapshots", base_model=None, start_weights=None,
                   output=tmp_path / "lora.parquet", **common)  # fmt: skip
    for step in load_snapshots(round_dir / "snapshots"):
        merged = PeftModel.from_pretrained(load_model(tiny_setup["base"]), round_dir / "snapshots" / f"step_{step}")
        save_dense_snapshot(full_parameter_model(merged.merge_and_unload()), tmp_path / "dense" / f"step_{step}")
    test_config["rl"]["mode"] = "full"
    trajectory.run(test_config, snapshots=tmp_path / "dense", base_model=tiny_setup["base"],
                   start_weights=tiny_setup["base"], output=tmp_path / "dense.parquet", **common)  # fmt: skip
    keys = ["module", "step", "kind"]
    lora, dense = (
        pd.read_parquet(tmp_path / f"{name}.parquet").query("k == 0 and kind != 'round'").set_index(keys).sort_index()
        for name in ("lora", "dense")
    )
    assert lora.index.equals(dense.index) and len(lora) > 50
    sigma_max = lora.groupby(level="kind")["sigma"].transform("max")
    assert np.allclose(dense["sigma"], lora["sigma"], rtol=1e-4, atol=1e-5 * sigma_max.max())
    checked = 0
    for key in lora.index[lora["sigma"] > 1e-3 * sigma_max]:
        product = np.outer(lora.loc[key, "u"], lora.loc[key, "v"])
        assert np.allclose(np.outer(dense.loc[key, "u"], dense.loc[key, "v"]), product, atol=2e-3), key
        checked += 1
    assert checked > 50


def test_dense_trajectory_rejects_a_base_without_the_modules(round_dir, test_config, tmp_path):
    test_config["rl"]["mode"] = "full"
    with pytest.raises(TrajectoryError, match="need --base-model and --start-weights"):
        trajectory.run(test_config, snapshots=round_dir / "snapshots", start_adapter=None, offset=None,
                       base_model=None, start_weights=None, output=tmp_path / "t.parquet", round_index=0)  # fmt: skip
    with pytest.raises(AdapterError, match="not a dense"):
        trajectory.run(test_config, snapshots=round_dir / "snapshots", start_adapter=None, offset=None,
                       base_model=tmp_path, start_weights=tmp_path, output=tmp_path / "t.parquet",
                       round_index=0)  # fmt: skip
    assert not (tmp_path / "t.parquet").exists()
