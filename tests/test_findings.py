import numpy as np
import pandas as pd
import pytest

from nextrl.analysis.findings import energy_table, fit_split, linear_fit_r2, linearity_table, rank1_gram


def dense_r2(steps, matrices, fitted):
    """Per-entry np.polyfit line on the first ``fitted`` snapshots, pooled held-out R² (variance weighted)."""
    flat = matrices.reshape(len(steps), -1)
    slope, intercept = np.polyfit(steps[:fitted], flat[:fitted], 1)
    held = flat[fitted:]
    predicted = np.outer(steps[fitted:], slope) + intercept
    return 1 - ((held - predicted) ** 2).sum() / ((held - held.mean(axis=0)) ** 2).sum()


def rank1_trajectory(rng, steps, curve):
    """Unit u, v drifting with t; σ following ``curve``."""
    u0, u1, v0, v1 = (rng.standard_normal(n) for n in (6, 6, 4, 4))
    u = np.stack([(u0 + 0.3 * t * u1) / np.linalg.norm(u0 + 0.3 * t * u1) for t in steps])
    v = np.stack([(v0 + 0.2 * t * v1) / np.linalg.norm(v0 + 0.2 * t * v1) for t in steps])
    sigma = curve(steps.astype(float))
    return sigma, u, v


def test_r2_from_the_gram_matrix_equals_the_dense_per_entry_fit():
    rng = np.random.default_rng(0)
    steps = np.arange(5, 80, 5)
    sigma, u, v = rank1_trajectory(rng, steps, lambda t: 1 + 0.1 * t + 0.02 * t**1.5)
    matrices = sigma[:, None, None] * u[:, :, None] * v[:, None, :]
    for fitted in (10, 5, 3):
        expected = dense_r2(steps, matrices, fitted)
        assert linear_fit_r2(steps, rank1_gram(sigma, u, v), fitted) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_r2_is_one_on_a_straight_path_and_negative_on_a_reversal():
    steps = np.array([1, 2, 3, 4, 5, 6])
    u, v = np.eye(3)[[0] * 6], np.eye(2)[[0] * 6]
    assert linear_fit_r2(steps, rank1_gram(2.0 * steps, u, v), 4) == pytest.approx(1.0)
    # σ rises 1, 2, 3, 4 then falls back to 2, 1: the line predicts 5, 6 where the truth is 2, 1 (mean 1.5), so
    # R² = 1 − ((5−2)² + (6−1)²) / ((2−1.5)² + (1−1.5)²) = 1 − 34 / 0.5 = −67
    sigma = np.array([1.0, 2, 3, 4, 2, 1])
    assert linear_fit_r2(steps, rank1_gram(sigma, u, v), 4) == pytest.approx(-67.0)


def test_fit_split_keeps_the_papers_split_or_its_two_to_one_ratio():
    assert fit_split(15) == (10, 5) and fit_split(30) == (10, 5)
    assert fit_split(8) == (6, 2) and fit_split(12) == (8, 4)
    assert fit_split(4) == (2, 2) and fit_split(3) is None


def trajectory_rows(module, steps, sigma, u, v, energy):
    return [
        {
            "round": 0,
            "step": int(t),
            "module": module,
            "kind": kind,
            "k": 0,
            "sigma": s,
            "u": a,
            "v": b,
            "energy_ratio": e,
        }
        for t, s, a, b, e in zip(steps, sigma, u, v, energy)
        for kind in ("global", "local")
    ]


def test_tables_from_a_trajectory_per_module_and_module_type():
    steps = np.array([5, 10, 15, 20])
    u, v = np.eye(3)[[0] * 4], np.eye(2)[[1] * 4]
    rows = trajectory_rows("layers.0.self_attn.q_proj", steps, [1.0, 2, 3, 4], u, v, [0.5, 0.6, 0.7, 0.8])
    rows += trajectory_rows("layers.1.self_attn.q_proj", steps, [1.0, 2, 3, 2], u, v, [0.7, 0.8, 0.9, 1.0])
    rows += trajectory_rows("layers.0.mlp.up_proj", steps[:3], [1.0, 2, 3], u[:3], v[:3], [0.2, 0.2, 0.2])
    trajectory = pd.DataFrame(rows)
    energy = energy_table(trajectory).set_index(["step", "module_type"])
    assert energy.loc[(20, "q_proj"), ["e1_mean", "e1_min", "e1_max"]].tolist() == pytest.approx([0.9, 0.8, 1.0])
    assert energy.loc[(15, "up_proj"), "e1_mean"] == pytest.approx(0.2)
    linearity = linearity_table(trajectory, "none", 3).set_index("module")
    assert list(linearity.index) == ["layers.0.self_attn.q_proj", "layers.1.self_attn.q_proj"]  # up_proj: 3 snapshots
    # fit (5, 1), (10, 2); predict 3, 4 at 15, 20 — exact for the first; the second's truth is 3, 2 (mean 2.5):
    # R² = 1 − ((3−3)² + (4−2)²) / (0.5² + 0.5²) = 1 − 4 / 0.5 = −7
    assert linearity["r2"].tolist() == pytest.approx([1.0, -7.0])
    assert set(linearity["fit_snapshots"]) == {2} and set(linearity["predicted_snapshots"]) == {2}
    assert set(linearity["module_type"]) == {"q_proj"} and set(linearity["seed"]) == {3}
