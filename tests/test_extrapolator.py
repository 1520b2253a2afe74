"""Tests of the extrapolator interface: ModuleDelta, validate_trajectory and the registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextrl.extrapolator import (
    EXTRAPOLATORS,
    REQUIRED_COLUMNS,
    Extrapolator,
    ModuleDelta,
    make_extrapolator,
    validate_trajectory,
)
from nextrl.next_predictor import NextPredictor


def tiny_trajectory(steps: tuple[int, ...] = (10, 20, 30), horizon: int = 10) -> pd.DataFrame:
    """One 4×3 module, k = 0 only; targets where t + H ≤ last step. Values are irrelevant to validation."""
    rows = []
    for step in steps:
        kinds = ["global", "local"] + (["target"] if step + horizon <= max(steps) else [])
        for kind in kinds:
            rows.append(
                {
                    "round": np.int32(0),
                    "step": step,
                    "module": "layers.0.q_proj",
                    "kind": kind,
                    "k": np.int16(0),
                    "sigma": 1.0,
                    "u": np.full(4, 0.5, dtype=np.float32),
                    "v": np.full(3, 3**-0.5, dtype=np.float32),
                    "energy_ratio": 1.0,
                    "frob_norm": 1.0,
                    "horizon": horizon,
                }
            )
    return pd.DataFrame(rows)


def test_valid_trajectory_passes() -> None:
    validate_trajectory(tiny_trajectory())


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_missing_column_is_named(column: str) -> None:
    with pytest.raises(ValueError, match=f"'{column}'"):
        validate_trajectory(tiny_trajectory().drop(columns=column))


def test_invalid_kind_is_named() -> None:
    trajectory = tiny_trajectory()
    trajectory.loc[0, "kind"] = "velocity"
    with pytest.raises(ValueError, match="velocity"):
        validate_trajectory(trajectory)


def test_several_horizons_rejected() -> None:
    trajectory = tiny_trajectory()
    trajectory.loc[0, "horizon"] = 20
    with pytest.raises(ValueError, match="horizon"):
        validate_trajectory(trajectory)


def test_no_target_rows_mentions_horizon_and_steps() -> None:
    trajectory = tiny_trajectory(steps=(10, 20), horizon=50)
    assert not (trajectory["kind"] == "target").any()
    with pytest.raises(ValueError, match=r"no target rows.*horizon H=50, snapshot steps \[10, 20\]"):
        validate_trajectory(trajectory)
    validate_trajectory(trajectory, require_targets=False)


@pytest.mark.parametrize("role", ["u", "v"])
def test_mismatched_vector_length_names_module(role: str) -> None:
    trajectory = tiny_trajectory()
    other = trajectory.assign(module="layers.1.k_proj")
    trajectory = pd.concat([trajectory, other], ignore_index=True)
    broken = (trajectory["module"] == "layers.1.k_proj") & (trajectory["step"] == 20)
    trajectory[role] = [np.append(x, 0.0).astype(np.float32) if b else x for x, b in zip(trajectory[role], broken)]
    with pytest.raises(ValueError, match=rf"'layers\.1\.k_proj'.*mismatched shapes.*{role} lengths"):
        validate_trajectory(trajectory)


def test_module_delta_is_finite() -> None:
    u = np.ones((4, 1), dtype=np.float32) / 2
    v = np.ones((3, 1), dtype=np.float32) / np.sqrt(3)
    assert ModuleDelta(u=u, sigma=np.array([1.0], dtype=np.float32), v=v).is_finite()
    assert not ModuleDelta(u=u, sigma=np.array([np.nan], dtype=np.float32), v=v).is_finite()
    assert not ModuleDelta(u=u, sigma=np.array([1.0], dtype=np.float32), v=v * np.inf).is_finite()


def test_module_delta_rejects_inconsistent_rank() -> None:
    with pytest.raises(ValueError, match="rank mismatch"):
        ModuleDelta(u=np.ones((4, 2), np.float32), sigma=np.ones(1, np.float32), v=np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="shapes"):
        ModuleDelta(u=np.ones(4, np.float32), sigma=np.ones(1, np.float32), v=np.ones((3, 1), np.float32))


def test_registry_builds_next() -> None:
    assert "next" in EXTRAPOLATORS
    extrapolator = make_extrapolator("next", {"hidden": 8, "epochs": 3})
    assert isinstance(extrapolator, NextPredictor)
    assert isinstance(extrapolator, Extrapolator)
    assert extrapolator.name == "next"
    assert extrapolator.options.hidden == 8


def test_unknown_extrapolator_lists_known() -> None:
    with pytest.raises(ValueError, match=r"unknown extrapolator 'relex_v9'.*'next'"):
        make_extrapolator("relex_v9", {})
