"""Comparison tables and the curve figure's helpers, against hand-computed values."""

import json
import math

import pandas as pd
import pytest

from nextrl.analysis.comparison import (
    ablation_table,
    arm_table,
    confidence_interval,
    heldout_table,
    probe_table,
    stacked,
    step_table,
    steps_to_target,
)
from nextrl.analysis.figures import same_as_none


def test_steps_to_target_is_the_first_step_whose_three_point_mean_reaches_it():
    curve = pd.DataFrame({"step": [0, 5, 10, 15, 20], "accuracy": [0.2, 0.4, 0.3, 0.5, 0.7]})
    # rolling means (from step 10 on): 0.3, 0.4, 0.5
    assert steps_to_target(curve, 0.3) == 10
    assert steps_to_target(curve, 0.45) == 20
    assert math.isnan(steps_to_target(curve, 0.55))


CURVES = {  # (arm, seed): validation accuracy at steps 0, 5, 10, 15, 20
    ("none", 0): [0.2, 0.3, 0.4, 0.5, 0.6],  # last three 0.5; rolling mean reaches 0.5 at step 20
    ("none", 1): [0.2, 0.3, 0.4, 0.5, 0.6],
    ("fast", 0): [0.2, 0.5, 0.6, 0.6, 0.6],  # rolling 0.433, 0.567 → 15
    ("fast", 1): [0.2, 0.6, 0.7, 0.7, 0.7],  # rolling 0.5 → 10
    ("slow", 0): [0.2, 0.2, 0.2, 0.2, 0.2],  # never
    ("slow", 1): [0.2, 0.2, 0.9, 0.9, 0.9],  # rolling 0.433, 0.667 → 15: reached in half its seeds, a candidate
    ("slower", 0): [0.2, 0.2, 0.2, 0.2, 0.2],  # never
    ("slower", 1): [0.2, 0.2, 0.2, 0.2, 0.2],
    ("next", 0): [0.2, 0.4, 0.6, 0.6, 0.6],  # rolling 0.4, 0.533 → 15
    ("next", 1): [0.2, 0.3, 0.3, 0.3, 0.3],  # never
    ("jumpy", 0): [0.2, 0.6, 0.7, 0.7, 0.7],  # → 10
    ("jumpy", 1): [0.2, 0.6, 0.7, 0.7, 0.7],
}
PLAIN = ["none", "fast", "slow", "slower"]


def hand_made_curves() -> pd.DataFrame:
    return pd.DataFrame([
        {"arm": arm, "seed": seed, "round": 0, "step": 5 * i, "accuracy": accuracy, "point": "snapshot"}
        for (arm, seed), accuracies in CURVES.items() for i, accuracy in enumerate(accuracies)
    ])  # fmt: skip


def test_step_table_ratios_against_none_and_the_fastest_plain_arm():
    table = step_table(hand_made_curves(), PLAIN).set_index(["arm", "seed"])
    assert table["target"].unique() == pytest.approx([0.5])
    steps = table["steps_to_target"]
    assert steps.loc["none"].tolist() == [20, 20] and steps.loc["fast"].tolist() == [15, 10]
    assert steps.loc[("next", 0)] == 15 and math.isnan(steps.loc[("next", 1)])
    assert set(table["target_fastest_plain"]) == {"fast"}  # mean 12.5 < slow's 15 (one seed); slower never reached
    assert table["ratio_to_none"].loc["fast"].tolist() == [0.75, 0.5]
    assert table.loc[("next", 0), "ratio_to_fastest_plain"] == pytest.approx(15 / 12.5)
    assert table.loc[("none", 0), "ratio_to_fastest_plain"] == pytest.approx(20 / 12.5)
    assert table.loc[("fast", 1), "final_val_accuracy"] == pytest.approx(0.7)
    no_fast = step_table(hand_made_curves().query("arm != 'fast'"), PLAIN).set_index(["arm", "seed"])
    assert set(no_fast["target_fastest_plain"]) == {"slow"}  # 15 < none's 20; slower never reached
    # the reference for ratio_to_none is none's mean over the seeds that reached the target
    one_seed = step_table(hand_made_curves().query("not (arm == 'none' and seed == 1)"), PLAIN)
    assert one_seed.set_index(["arm", "seed"]).loc[("next", 0), "ratio_to_none"] == pytest.approx(15 / 20)


def test_arm_table_icer_and_the_acceleration_verdict():
    saved_against_fastest = {"none": [-5, -5, -5], "fast": [0, 0, 0], "jumpy": [4, 5, 6], "next": [-2, 10, 4]}
    per_seed = pd.DataFrame([
        {"arm": arm, "seed": seed, "fastest_plain": "fast", "steps_saved": saved + 5, "speedup": 1 + (saved + 5) / 20,
         "censored": "above" if arm == "next" and seed == 1 else "", "steps_saved_peak": saved + 6,
         "steps_saved_peak_fastest": saved + 1, "steps_saved_fastest": saved,
         "speedup_fastest": 1 + saved / 20, "censored_fastest": "", "steps_to_target": 10.0,
         "target_fastest_plain": "fast", "ratio_to_none": 1.0, "ratio_to_fastest_plain": 1.0, "final_val_accuracy": 0.5,
         "test_accuracy": 0.6 if arm in ("fast", "jumpy") else 0.5, "rl_steps": 20, "rl_seconds": 1.0,
         "rl_job_seconds": 2.0, "overhead_seconds": 0.0, "overhead_compute_seconds": 0.0}
        for arm, saved_per_seed in saved_against_fastest.items() for seed, saved in enumerate(saved_per_seed)
    ])  # fmt: skip
    table = arm_table(per_seed, base_test_accuracy=0.3, plain=["none", "fast"]).set_index("arm")
    assert table.loc["none", "icer"] == pytest.approx(20 / 20)  # 20 steps / 20 points of test gain
    assert table.loc["fast", "icer"] == pytest.approx(20 / 30)
    # jumpy: 5 ± t(0.975, 2)·1/√3 = 5 ± 2.48 steps saved against fast, above 0, and test accuracy as fast's
    assert table.loc["jumpy", "steps_saved_fastest_mean"] == 5
    assert table.loc["jumpy", "steps_saved_fastest_ci95"] == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert table.loc["jumpy", "steps_saved_mean"] == 10 and table.loc["jumpy", "speedup_mean"] == pytest.approx(1.5)
    assert table.loc["jumpy", "steps_saved_peak_mean"] == 11
    assert table.loc["jumpy", "acceleration"] is True
    assert table.loc["next", "acceleration"] is False  # 4 ± 14.9: the interval reaches below 0
    assert table.loc["next", "censored"] == "1 above, 0 below"
    assert table.loc["none", "acceleration"] is None and table.loc["fast", "acceleration"] is None
    slower_test = per_seed.assign(test_accuracy=per_seed["test_accuracy"].where(per_seed["arm"] != "jumpy", 0.4))
    assert arm_table(slower_test, 0.3, ["none", "fast"]).set_index("arm").loc["jumpy", "acceleration"] is False


def test_confidence_interval_is_student_t_over_seeds():
    mean, half = confidence_interval(pd.Series([1.0, 2.0, 3.0]))
    assert mean == 2.0
    assert half == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))  # t(0.975, 2) · s / √n
    assert confidence_interval(pd.Series([0.7])) == (0.7, 0.0)


def test_heldout_table_counts_failures_and_aggregates_per_method(tmp_path):
    scored = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b"],
            "module": ["m1", "m2", "m3", ""],
            "rank1_cosine": [0.5, -0.5, 1.0, math.nan],
            "relative_error": [0.2, 2.0, 0.4, math.nan],
            "sigma_ratio": [1.0, 1.0, 3.0, math.nan],
            "error": ["", "", "", "b: cannot fit"],
        }
    )
    scored.to_parquet(tmp_path / "heldout.parquet")
    table = heldout_table([{"arm": "x", "seed": 0, "round": 0, "heldout": str(tmp_path / "heldout.parquet")}])
    a, b = table.set_index("method").loc["a"], table.set_index("method").loc["b"]
    assert (a["pairs"], a["rounds_failed"], b["pairs"], b["rounds_failed"]) == (3, 0, 0, 1)
    assert a["rank1_cosine_mean"] == pytest.approx(1 / 3)
    assert a["positive_cosine_share"] == pytest.approx(2 / 3)
    assert a["relative_error_median"] == pytest.approx(0.4)
    assert math.isnan(b["rank1_cosine_mean"])


def test_an_arm_identical_to_none_is_recognised():
    rows = {"seed": [0, 0], "step": [5, 10], "accuracy": [0.3, 0.4]}
    curves = pd.concat(
        [
            pd.DataFrame({**rows, "arm": "none"}),
            pd.DataFrame({**rows, "arm": "linear"}),
            pd.DataFrame({**rows, "arm": "next", "accuracy": [0.3, 0.41]}),
        ]
    )
    assert same_as_none(curves, "linear") and not same_as_none(curves, "next") and not same_as_none(curves, "none")


def test_probe_table_says_whether_accuracy_rises_beyond_k1(tmp_path):
    runs = []
    for seed, accuracies in enumerate([[0.2, 0.4, 0.5, 0.45], [0.2, 0.4, 0.3, 0.45]]):
        path = tmp_path / f"probe{seed}.parquet"
        pd.DataFrame({"arm": "none", "seed": seed, "round": 0, "k": [0.0, 1.0, 1.5, 2.0], "accuracy": accuracies,
                      "n_items": 10}).to_parquet(path)  # fmt: skip
        runs.append({"arm": "none", "seed": seed, "round": 0, "probe": str(path)})
    runs.append({"arm": "next", "seed": 0, "round": 0, "probe": None})  # round 0 of a jump arm: probed in none
    stacked_probe = stacked(runs, "probe")
    assert len(stacked_probe) == 8 and set(stacked_probe["seed"]) == {0, 1}
    row = probe_table(stacked_probe).iloc[0]
    assert (row["k=1"], row["k=1.5"], row["k=2"]) == pytest.approx((0.4, 0.4, 0.45))
    assert row["best_k"] == 2.0 and bool(row["rises_beyond_1"]) and row["seeds"] == 2


def test_ablation_table_keeps_next_its_ablations_and_plain_rl():
    table = pd.DataFrame({
        "arm": ["none", "none_lr1e3", "next", "next_nolocal", "linear"], "seeds": 3, "steps_saved_mean": 0.0,
        "steps_saved_ci95": 1.0,
        "steps_to_target_mean": [80, 20, 60, 70, 50], "ratio_to_none_mean": [1, 0.25, 0.75, 0.875, 0.625],
        "ratio_to_none_ci95": 0.1, "test_accuracy_mean": 0.8, "test_accuracy_ci95": 0.01, "icer": 5.0,
    })  # fmt: skip
    methods = {"none": "none", "none_lr1e3": "none", "next": "next", "next_nolocal": "next_global", "linear": "linear"}
    training = dict.fromkeys(methods, "lora") | {"none_lr1e3": "full"}
    ablation = ablation_table(table, methods, training)
    assert list(ablation["training"]) == ["lora", "full", "lora", "lora"]
    assert list(ablation["arm"]) == ["none", "none_lr1e3", "next", "next_nolocal"]
    assert list(ablation["method"]) == ["none", "none", "next", "next_global"]
    assert list(ablation["ratio_to_none_mean"]) == [1, 0.25, 0.75, 0.875]


def test_experiments_side_by_side_carry_their_advantage(tmp_path):
    from nextrl.analysis.cross_experiment import COLUMNS, main

    for name, advantage, ratio in (("grpo_run", "grpo", 0.9), ("rloo_run", "rloo", 0.7)):
        summary = tmp_path / name / "summary"
        summary.mkdir(parents=True)
        (summary / "config.json").write_text(json.dumps({"experiment": name, "rl": {"advantage": advantage}}))
        pd.DataFrame({"arm": ["none", "next"], "seeds": 3, "steps_saved_mean": [0, 8], "steps_saved_ci95": 2.0,
                      "steps_saved_fastest_mean": [-4, 4], "steps_saved_fastest_ci95": 2.0,
                      "steps_to_target_mean": [80, 72],
                      "ratio_to_none_mean": [1.0, ratio], "ratio_to_none_ci95": 0.1, "test_accuracy_mean": 0.8,
                      "test_accuracy_ci95": 0.02, "icer": 5.0, "other": 1}).to_csv(summary / "table.csv")  # fmt: skip
    assert main([str(tmp_path / "grpo_run"), str(tmp_path / "rloo_run"), "--output", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "experiments.csv")
    assert list(table.columns) == list(COLUMNS)
    assert set(table["training"]) == {"lora"}  # a config without rl.mode trains LoRA
    assert list(zip(table["advantage"], table["arm"], table["ratio_to_none_mean"], strict=True)) == [
        ("grpo", "none", 1.0), ("grpo", "next", 0.9), ("rloo", "none", 1.0), ("rloo", "next", 0.7)]  # fmt: skip
    assert "\\begin{tabular}" in (tmp_path / "out" / "experiments.tex").read_text()
    assert main([str(tmp_path / "missing"), "--output", str(tmp_path / "none")]) == 1
    assert not (tmp_path / "none").exists()
