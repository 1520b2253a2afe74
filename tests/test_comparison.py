"""Comparison tables and the curve figure's helpers, against hand-computed values."""

import math

import pandas as pd
import pytest

from nextrl.comparison import confidence_interval, heldout_table, probe_table, steps_to_target
from nextrl.figures import same_as_none


def test_steps_to_target_is_the_first_step_reaching_it():
    curve = pd.DataFrame({"step": [0, 5, 10, 15], "accuracy": [0.2, 0.4, 0.35, 0.5]})
    assert steps_to_target(curve, 0.4) == 5
    assert steps_to_target(curve, 0.45) == 15
    assert math.isnan(steps_to_target(curve, 0.6))


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
    paths = []
    for seed, accuracies in enumerate([[0.2, 0.4, 0.5, 0.45], [0.2, 0.4, 0.3, 0.45]]):
        path = tmp_path / f"probe{seed}.parquet"
        pd.DataFrame({"arm": "none", "seed": seed, "round": 0, "k": [0.0, 1.0, 1.5, 2.0], "accuracy": accuracies,
                      "n_items": 10}).to_parquet(path)  # fmt: skip
        paths.append({"probe": str(path)})
    row = probe_table(paths).iloc[0]
    assert (row["k=1"], row["k=1.5"], row["k=2"]) == pytest.approx((0.4, 0.4, 0.45))
    assert row["best_k"] == 2.0 and bool(row["rises_beyond_1"]) and row["seeds"] == 2
