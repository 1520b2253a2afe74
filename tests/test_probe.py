"""The extrapolability probe: the ray's LoRA factors are exact, and the stage scores every k on validation."""

import pandas as pd
import pytest
import torch

from nextrl.lowrank.adapters import Adapter
from nextrl.lowrank.ray import PROBE_COLUMNS, PROBE_KS, ray_factors
from nextrl.stages import probe, rl_chunk


def adapter(seed: int, scale: float) -> Adapter:
    generator = torch.Generator().manual_seed(seed)
    return Adapter({"m": (torch.randn(6, 2, generator=generator), torch.randn(2, 5, generator=generator))}, scale, {})


@pytest.mark.parametrize("k", [0.0, 1.0, 2.5])
def test_ray_point_is_w_start_plus_k_times_the_round_delta(k):
    start, end = adapter(0, 2.0), adapter(1, 2.0)
    product = {name: a.scale * a.factors["m"][0] @ a.factors["m"][1] for name, a in (("start", start), ("end", end))}
    left, right = ray_factors(end, start, k)["m"]
    assert torch.allclose(left @ right, product["start"] + k * (product["end"] - product["start"]), atol=1e-5)
    left, right = ray_factors(end, None, k)["m"]  # a fresh LoRA starts at zero
    assert torch.allclose(left @ right, k * product["end"], atol=1e-5)


def test_probe_scores_every_k_and_k1_is_the_round_end(tiny_setup, test_config, tmp_path):
    rl_chunk.run(test_config, start_model=tiny_setup["base"], resume=None, jump_selection=None,
                 data=tiny_setup["data"], output=tmp_path / "rl", seed=3, round_index=0)  # fmt: skip
    probe.run(test_config, start_model=tiny_setup["base"], adapter=tmp_path / "rl" / "state" / "adapter",
              start_adapter=None, data=tiny_setup["data"], output=tmp_path / "probe.parquet", arm="none", seed=3,
              round_index=0)  # fmt: skip
    table = pd.read_parquet(tmp_path / "probe.parquet")
    assert list(table.columns) == list(PROBE_COLUMNS) and list(table["k"]) == list(PROBE_KS)
    evaluations = pd.read_parquet(tmp_path / "rl" / "eval.parquet").set_index("step")["accuracy"]
    n_items = int(table["n_items"].iloc[0])
    at = table.set_index("k")["accuracy"]
    # k = 0 is the start model, k = 1 the round's end: the same weights up to float rounding of the LoRA product
    assert abs(at[0.0] - evaluations[0]) <= 1 / n_items
    assert abs(at[1.0] - evaluations[test_config["rl"]["chunk_steps"]]) <= 1 / n_items
    assert not list(tmp_path.glob(".probe.*"))  # the scratch adapters are gone


def test_probe_reads_a_known_accuracy_profile_along_a_hand_built_ray(test_config, tmp_path, monkeypatch):
    """A stub evaluator scores each probed adapter by its position k on the ray (recovered from its weights) with a
    known profile that peaks at k = 1.25; the stage must report that profile and the summary that it rises past 1."""
    from nextrl.analysis.comparison import probe_table
    from nextrl.lowrank.adapters import load_adapter, save_scale_one_adapter

    def profile(k: float) -> float:
        return 0.6 + 0.1 * k - 0.04 * k * k

    start, end = adapter(0, 1.0), adapter(1, 1.0)
    for name, hand_built in (("start", start), ("end", end)):
        save_scale_one_adapter(hand_built.factors, {"r": 2, "lora_alpha": 2}, tmp_path / name)
    product = {name: a.factors["m"][0] @ a.factors["m"][1] for name, a in (("start", start), ("end", end))}
    delta = product["end"] - product["start"]

    def stub_scores(start_model, adapters, items, scorer, evaluation, rollout, runtime):
        rows = []
        for name, directory in adapters.items():
            left, right = load_adapter(directory).scaled_factors()["m"]
            k = float(((left @ right - product["start"]) * delta).sum() / (delta * delta).sum())
            rows.append({"name": name, "accuracy": profile(k), "n_items": 10, "seconds": 0.0})
        return pd.DataFrame(rows)

    monkeypatch.setattr(probe, "score_adapters", stub_scores)
    (tmp_path / "data").mkdir()
    pd.DataFrame({"prompt": ["1+1="], "answer": ["2"]}).to_parquet(tmp_path / "data" / "validation.parquet")
    probe.run(test_config, start_model=tmp_path, adapter=tmp_path / "end", start_adapter=tmp_path / "start",
              data=tmp_path / "data", output=tmp_path / "probe.parquet", arm="none", seed=0, round_index=0)  # fmt: skip
    table = pd.read_parquet(tmp_path / "probe.parquet")
    assert table["accuracy"].tolist() == pytest.approx([profile(k) for k in PROBE_KS], abs=1e-5)
    row = probe_table(table).iloc[0]
    assert row["best_k"] == 1.25 and bool(row["rises_beyond_1"])
