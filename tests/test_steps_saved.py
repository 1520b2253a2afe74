"""Steps saved against plain RL's curve of the same seed, on hand-made curves with hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from nextrl.analysis.steps_saved import envelope, equivalent_steps, fastest_plain, steps_saved_table

PLAIN_STEPS = [0, 10, 20, 30, 40]
PLAIN = [0.2, 0.3, 0.25, 0.4, 0.5]  # running maximum 0.2, 0.3, 0.3, 0.4, 0.5


def curve(arm: str, seed: int, accuracies: list[float], steps: list[int] = PLAIN_STEPS) -> pd.DataFrame:
    return pd.DataFrame({"arm": arm, "seed": seed, "round": 0, "step": steps, "accuracy": accuracies,
                         "point": "snapshot"})  # fmt: skip


def test_the_envelope_is_plain_rls_running_maximum():
    steps, best = envelope(curve("none", 0, PLAIN))
    assert steps.tolist() == PLAIN_STEPS and best.tolist() == [0.2, 0.3, 0.3, 0.4, 0.5]


@pytest.mark.parametrize(
    ("accuracy", "expected"),
    [
        (0.45, (35.0, "")),  # between 0.4 at step 30 and 0.5 at step 40
        (0.35, (25.0, "")),  # the dip at step 20 does not count: between the plateau's end (20) and 30
        (0.3, (10.0, "")),  # first reached at step 10
        (0.2, (0.0, "")),  # plain RL's start
        (0.5, (40.0, "")),
        (0.6, (40.0, "above")),  # beyond all plain RL reached: a lower bound
        (0.1, (0.0, "below")),  # below plain RL's start: an upper bound
    ],
)
def test_equivalent_steps_invert_the_envelope_by_linear_interpolation(accuracy, expected):
    steps, best = envelope(curve("none", 0, PLAIN))
    equivalent, censored = equivalent_steps(accuracy, steps, best)
    assert (equivalent, censored) == (pytest.approx(expected[0]), expected[1])


def hand_made() -> pd.DataFrame:
    return pd.concat([
        curve("none", 0, PLAIN),
        curve("none", 1, [0.2, 0.2, 0.4, 0.4, 0.6]),
        curve("fast", 0, [0.2, 0.5], [0, 20]),  # ends at 0.5 at step 20: none's step 40 → saves 20
        curve("fast", 1, [0.2, 0.5], [0, 20]),  # 0.5 on seed 1: between 0.4 (step 30) and 0.6 (40) → 35
        curve("next", 0, [0.2, 0.3, 0.45], [0, 20, 40]),  # → 35 on none, saves −5
        curve("next", 1, [0.2, 0.3, 0.7], [0, 20, 40]),  # above none's 0.6 → censored at 40
        curve("low", 0, [0.2, 0.1], [0, 40]),  # below none's start
        curve("low", 1, [0.2, 0.3], [0, 40]),  # 0.3 on seed 1: between 0.2 (step 10) and 0.4 (20) → 15
    ])  # fmt: skip


def test_steps_saved_per_seed_against_none_and_the_fastest_plain_arm():
    table = steps_saved_table(hand_made(), ["none", "fast"]).set_index(["arm", "seed"])
    # fast's mean speed along none's curve: (40/20 + 35/20) / 2 = 1.875; none's own: seed 0 (10/10 + 5/20 + 30/30 +
    # 40/40) / 4 = 0.8125, seed 1 (0/10 + 20/20 + 20/30 + 40/40) / 4
    assert fastest_plain(hand_made(), ["none", "fast"]) == "fast"
    assert set(table["fastest_plain"]) == {"fast"}
    assert table.loc[("fast", 0), ["equivalent_steps", "steps_saved", "speedup"]].tolist() == [40, 20, 2]
    assert table.loc[("fast", 1), "steps_saved"] == pytest.approx(15)
    assert table.loc[("next", 0), ["equivalent_steps", "steps_saved"]].tolist() == pytest.approx([35, -5])
    assert table.loc[("next", 1), ["equivalent_steps", "censored"]].tolist() == [40, "above"]
    assert table.loc[("low", 0), ["equivalent_steps", "steps_saved", "censored"]].tolist() == [0, -40, "below"]
    assert table.loc[("low", 1), "equivalent_steps"] == pytest.approx(15)
    # against fast's curve (steps 0, 20; 0.2 → 0.5): next's 0.45 on seed 0 is step 20·(0.25/0.3)
    assert table.loc[("next", 0), "equivalent_steps_fastest"] == pytest.approx(20 * 0.25 / 0.3)
    assert table.loc[("next", 1), "censored_fastest"] == "above"
    assert table.loc[("none", 0), "steps_saved_fastest"] == pytest.approx(20 * 0.3 / 0.3 - 40)  # 0.5: step 20


def test_without_a_faster_plain_arm_none_is_its_own_fastest():
    assert fastest_plain(hand_made().query("arm != 'fast'"), ["none"]) == "none"
    table = steps_saved_table(hand_made().query("arm != 'fast'"), ["none"])
    assert (table["equivalent_steps"].fillna(-1) == table["equivalent_steps_fastest"].fillna(-1)).all()


def test_every_arm_gets_a_number_on_every_seed():
    table = steps_saved_table(hand_made(), ["none", "fast"])
    assert not table[["equivalent_steps", "steps_saved", "equivalent_steps_fastest"]].isna().any().any()
    assert np.isfinite(table["speedup"]).all() and not math.isnan(table["speedup"].sum())


def test_the_fastest_plain_arm_is_told_apart_by_its_way_there():
    curves = pd.concat([
        curve("none", 0, [0.2, 0.3, 0.4], [0, 10, 20]),
        curve("late", 0, [0.2, 0.2, 0.5], [0, 10, 20]),
        curve("quick", 0, [0.2, 0.5, 0.5], [0, 10, 20]),
    ])  # fmt: skip
    # both end at 0.5, above none's best (censored at step 20); speeds: quick (20/10 + 20/20) / 2 = 1.5, none 1,
    # late (0/10 + 20/20) / 2 = 0.5
    assert fastest_plain(curves, ["none", "late", "quick"]) == "quick"


def test_a_lead_that_fades_shows_in_the_peak_not_at_the_end():
    curves = pd.concat([curve("none", 0, PLAIN), curve("jumped", 0, [0.2, 0.4, 0.45], [0, 20, 40])])
    row = steps_saved_table(curves, ["none"]).set_index("arm").loc["jumped"]
    # 0.4 at step 20 is plain RL's step 30 (10 ahead); 0.45 at step 40 is its step 35 (5 behind)
    assert (row["steps_saved_peak"], row["steps_saved"]) == (pytest.approx(10), pytest.approx(-5))
