"""Tests of every extrapolator (nextrl.extrapolators) on synthetic LoRA trajectories whose law is known.

The trajectories are built the way the pipeline builds them: LoRA adapters W_t = W_base + O + s·B_t A_t go through
:func:`nextrl.lowrank.trajectory_table.trajectory_table`, so triplets, sign alignment and the round/local/target rows
are real.
With B_t = p(t)·b and A fixed, G_t = O + p(t)·M (M = s·b A) and every delta is a multiple of M.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nextrl.extrapolators import REGISTRY, AlphaRL, Linear, Next, NextGlobal, NextLocal, Relex, RepeatLast
from nextrl.extrapolators.base import OPTIONS_FILE, ExtrapolatorError
from nextrl.extrapolators.next import BRANCHES, TripletNetwork, group_loss, rank1_delta, seeded_network
from nextrl.lowrank.adapters import Adapter
from nextrl.lowrank.module_delta import ModuleDelta
from nextrl.lowrank.trajectory_table import trajectory_table

SHAPES = {
    "base_model.model.layers.0.self_attn.q_proj": (16, 8),
    "base_model.model.layers.0.self_attn.k_proj": (16, 8),
    "base_model.model.layers.0.mlp.up_proj": (32, 8),
    "base_model.model.layers.0.self_attn.o_proj": (8, 8),
}
STEPS = tuple(range(5, 45, 5))  # 5, 10, …, 40
HORIZON = 10
LORA_SCALE = 2.0
FAST_NEXT = {"hidden": 8, "epochs": 5, "lr": 1e-3, "lr_min": 1e-4}


def linear_in_t(step: int) -> float:
    return float(step)


def make_trajectory(
    position: Callable[[int], float] = linear_in_t,
    *,
    rank: int = 1,
    steps: tuple[int, ...] = STEPS,
    start_step: int = 0,
    offset_rank: int = 0,
    triplets: int = 4,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The trajectory of G_t = O + p(t)·M per module (LoRA B_t = p(t)·b, A fixed) and each module's M (dense).

    Modules differ in scale by orders of magnitude. The round starts at ``start_step`` from B = p(start_step)·b.
    """
    generator = torch.Generator().manual_seed(seed)
    directions, offset = {}, {}
    for index, (module, (m, n)) in enumerate(SHAPES.items()):
        b = torch.randn(m, rank, generator=generator) * 10.0 ** (index - 2)
        directions[module] = (b, torch.randn(rank, n, generator=generator))
        if offset_rank:
            offset[module] = (
                torch.randn(m, offset_rank, generator=generator),
                torch.randn(offset_rank, n, generator=generator),
            )

    def adapter(step: int) -> Adapter:
        return Adapter({module: (position(step) * b, a) for module, (b, a) in directions.items()}, LORA_SCALE, {})

    table = trajectory_table(
        {step: adapter(step) for step in steps},
        adapter(start_step) if position(start_step) else None,
        offset or None,
        round_index=0,
        start_step=start_step,
        horizon=HORIZON,
        triplets=triplets,
    )
    motion = {module: (LORA_SCALE * b @ a).numpy().astype(np.float64) for module, (b, a) in directions.items()}
    return table.to_pandas(), motion


def evaluations_for(accuracy: Callable[[int], float], steps: tuple[int, ...] = STEPS) -> pd.DataFrame:
    return pd.DataFrame({"step": list(steps), "accuracy": [accuracy(step) for step in steps], "split": "validation"})


def assert_recovers(
    predicted: Mapping[str, ModuleDelta], expected: Mapping[str, np.ndarray], tolerance: float = 2e-5
) -> None:
    """Each module's ΔŴ equals the expected matrix to float32 precision (relative Frobenius error)."""
    assert sorted(predicted) == sorted(expected)
    for module, matrix in expected.items():
        error = np.linalg.norm(predicted[module].dense() - matrix) / np.linalg.norm(matrix)
        assert error < tolerance, f"{module}: relative error {error:.2e}"


def assert_identical(first: Mapping[str, ModuleDelta], second: Mapping[str, ModuleDelta]) -> None:
    assert sorted(first) == sorted(second)
    for module, delta in first.items():
        for part in ("u", "sigma", "v"):
            np.testing.assert_array_equal(
                getattr(delta, part), getattr(second[module], part), err_msg=f"{module}.{part}"
            )


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def linear_motion() -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """G_t = t·M, rank-1 M: constant velocity, so every target Y_t = H·M."""
    return make_trajectory()


# --- known laws ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [1, 2])
def test_linear_recovers_linear_motion(rank: int) -> None:
    trajectory, motion = make_trajectory(rank=rank)
    assert_recovers(Linear().predict(trajectory), {module: HORIZON * m for module, m in motion.items()})


def test_linear_measures_from_the_round_start_step() -> None:
    """A round starting at t₀ = 20 from W_start = 20·M: ΔŴ = H/(T − t₀)·(W_T − W_start) = H·M, offset irrelevant."""
    trajectory, motion = make_trajectory(steps=(25, 30, 35, 40, 45, 50), start_step=20, offset_rank=1)
    assert_recovers(Linear().predict(trajectory), {module: HORIZON * m for module, m in motion.items()})


@pytest.mark.parametrize("rank", [1, 2])
def test_relex_recovers_linear_motion_with_one_component(rank: int) -> None:
    trajectory, motion = make_trajectory(rank=rank)
    assert_recovers(Relex({"rank": 1}).predict(trajectory), {module: HORIZON * m for module, m in motion.items()})


def test_relex_recovers_affine_motion_with_two_components() -> None:
    """G_t = O + t·M (a constant offset from earlier jumps): the history has rank 2 in time, so rank 2 is exact."""
    trajectory, motion = make_trajectory(rank=1, offset_rank=1)
    expected = {module: HORIZON * m for module, m in motion.items()}
    assert_recovers(Relex({"rank": 2}).predict(trajectory), expected)
    with pytest.raises(AssertionError, match="relative error"):  # one component mixes O into the direction
        assert_recovers(Relex({"rank": 1}).predict(trajectory), expected)


def test_repeat_last_recovers_constant_velocity_with_uneven_snapshots() -> None:
    """Snapshots 5, 10, 20, 40: L_T = 20·M, Δ = 20, so ΔŴ = (H/Δ)·L_T = H·M."""
    trajectory, motion = make_trajectory(rank=2, steps=(5, 10, 20, 40))
    assert_recovers(RepeatLast().predict(trajectory), {module: HORIZON * m for module, m in motion.items()})


def test_alpharl_recovers_linear_dynamics_with_the_accuracy_trend() -> None:
    """a_t = t·σ_M u_M and x_t = 0.2 + 0.01·t: x* − x_T = 0.01·H by the trend, so ΔŴ = (x* − x_T)/0.01·M = H·M."""
    trajectory, motion = make_trajectory()
    alpharl = AlphaRL()
    alpharl.fit(trajectory, evaluations_for(lambda step: 0.2 + 0.01 * step))
    assert_recovers(alpharl.predict(trajectory), {module: HORIZON * m for module, m in motion.items()})


def test_alpharl_is_linear_in_accuracy_not_in_time() -> None:
    """G_t = t²·M and x_t = 0.1 + 0.001·t² (a_t affine in x_t), window = first 3 snapshots, target_gain 0.05:
    ΔŴ = 0.05/0.001·M = 50·M, whatever the motion in t."""
    trajectory, motion = make_trajectory(lambda step: float(step) ** 2)
    alpharl = AlphaRL({"window": 3, "target_gain": 0.05})
    alpharl.fit(trajectory, evaluations_for(lambda step: 0.1 + 0.001 * step**2))
    assert_recovers(alpharl.predict(trajectory), {module: 50.0 * m for module, m in motion.items()})


def test_next_learns_constant_velocity(linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]]) -> None:
    """Under G_t = t·M every target is Y_t = H·M while the σ input grows with t: the predictor must learn it.

    Hyperparameters tuned to this synthetic law only (a fast, large-lr fit), never to real data.
    """
    trajectory, motion = linear_motion
    predictor = Next({"hidden": 32, "epochs": 300, "lr": 1e-2, "lr_min": 1e-3})
    log = predictor.fit(trajectory)
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    for module, delta in predictor.predict(trajectory).items():
        truth = HORIZON * motion[module]
        assert delta.sigma.shape == (1,) and delta.sigma[0] >= 0
        assert cosine(delta.dense(), truth) > 0.99, module
        assert abs(delta.sigma[0] - np.linalg.norm(truth)) / np.linalg.norm(truth) < 0.05, module


# --- NExt's architecture and loss -----------------------------------------------------------------------------------


def layer_shapes(sequence: torch.nn.Sequential) -> list[tuple[int, int] | str]:
    return [
        (layer.in_features, layer.out_features) if isinstance(layer, torch.nn.Linear) else "relu" for layer in sequence
    ]


def test_next_network_structure_and_parameter_count() -> None:
    """d = 4, h = 8. Branch: 4·8+8 + 8·4+4 + 4·8+8 + 8·4+4 = 152. Combiner on 2d = 8 inputs: 3·(8·8+8) + 8·4+4 = 252.
    Both branches: 2·152 + 252 = 556. One branch, combiner on d = 4: (4·8+8) + 2·(8·8+8) + (8·4+4) = 220, total 372."""
    network = TripletNetwork(dim=4, hidden=8, branches=BRANCHES)
    assert list(network.branches) == ["global", "local"]
    for branch in network.branches.values():
        assert layer_shapes(branch) == [(4, 8), (8, 4), "relu", (4, 8), (8, 4)]
        assert sum(p.numel() for p in branch.parameters()) == 152
    assert layer_shapes(network.combiner) == [(8, 8), (8, 8), "relu", (8, 8), (8, 4)]
    assert sum(p.numel() for p in network.parameters()) == 556

    single = TripletNetwork(dim=4, hidden=8, branches=("global",))
    assert layer_shapes(single.combiner) == [(4, 8), (8, 8), "relu", (8, 8), (8, 4)]
    assert sum(p.numel() for p in single.parameters()) == 372


def test_group_loss_is_l1_summed_over_entries_per_checkpoint() -> None:
    prediction = torch.tensor([[1.0, -2.0], [3.0, 0.5], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.0, 4.0]])
    # |1| + |−2| + |2| + 0 + 0 + |−4| = 9 over 3 checkpoints.
    assert group_loss(prediction, target, checkpoints=3).item() == pytest.approx(3.0)


def test_next_logged_loss_is_the_hand_computed_l1(linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]]) -> None:
    """The first logged σ loss equals Σ|f(σ_G, σ_L) − σ_Y| / n_checkpoints of the seeded initial network."""
    trajectory, _ = linear_motion
    predictor = Next({"hidden": 8, "epochs": 1, "sigma_scaling": False}, seed=3)
    log = predictor.fit(trajectory)

    def top_sigma(kind: str) -> pd.Series:
        rows = trajectory[(trajectory["kind"] == kind) & (trajectory["k"] == 0)]
        return rows.set_index(["module", "step"])["sigma"].sort_index()

    target = top_sigma("target")
    inputs = {
        kind: torch.tensor(top_sigma(kind).loc[target.index].to_numpy(), dtype=torch.float32)[:, None]
        for kind in BRANCHES
    }
    initial = seeded_network("sigma", 1, 8, BRANCHES, seed=3)
    with torch.no_grad():
        output = initial(inputs).numpy()[:, 0].astype(np.float64)
    checkpoints = target.index.get_level_values("step").nunique()
    assert checkpoints == 6  # t = 5, …, 30 have a target at t + 10 ≤ 40
    expected = np.abs(output - target.to_numpy()).sum() / checkpoints
    logged = log.loc[(log["group"] == "sigma") & (log["epoch"] == 0), "loss"].item()
    assert logged == pytest.approx(expected, rel=1e-5)
    assert sorted(log["group"].unique()) == ["sigma", "u_16", "u_32", "u_8", "v_8"]


@pytest.mark.parametrize(
    ("cls", "branches"), [(Next, ["global", "local"]), (NextGlobal, ["global"]), (NextLocal, ["local"])]
)
def test_next_ablations_have_one_branch(
    cls: type[Next], branches: list[str], linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]]
) -> None:
    predictor = cls(FAST_NEXT)
    predictor.fit(linear_motion[0])
    for network in predictor.networks.values():
        assert list(network.branches) == branches


def test_next_negative_sigma_reverses_the_direction() -> None:
    """σ̂ is used raw, not clamped: σ̂ = −6 is stored as (−û, 6, v̂), the same matrix −6·û v̂ᵀ."""
    delta = rank1_delta(np.array([1.0, 0.0], np.float32), -6.0, np.array([0.0, 1.0], np.float32))
    np.testing.assert_array_equal(delta.u[:, 0], [-1.0, 0.0])
    np.testing.assert_array_equal(delta.sigma, [6.0])
    np.testing.assert_array_equal(delta.dense(), [[0.0, -6.0], [0.0, 0.0]])


@pytest.mark.parametrize("cls", [Next, NextGlobal, NextLocal])
def test_next_cuda_without_cuda_is_an_error_naming_the_key(
    cls: type, linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    predictor = cls({**FAST_NEXT, "device": "cuda"})
    with pytest.raises(RuntimeError, match=rf"extrapolators\.{cls.name}\.device: cuda, but torch finds no CUDA device"):
        predictor.fit(linear_motion[0])
    assert predictor.networks == {}


def test_a_predictor_fitted_for_cuda_loads_on_the_cpu(
    tmp_path: Path, linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``device`` is where the predictor trains; ``load`` (the CPU extrapolate job) puts the networks on the CPU."""
    trajectory, _ = linear_motion
    predictor = Next(FAST_NEXT)
    predictor.fit(trajectory)
    predictor.save(tmp_path / "next")
    manifest = json.loads((tmp_path / "next" / OPTIONS_FILE).read_text())
    manifest["options"]["device"] = "cuda"  # as the fit job of a GPU config writes it
    (tmp_path / "next" / OPTIONS_FILE).write_text(json.dumps(manifest))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = Next.load(tmp_path / "next")
    assert loaded.options.device == "cuda"
    assert all(next(network.parameters()).device.type == "cpu" for network in loaded.networks.values())
    for module, delta in loaded.predict(trajectory).items():
        np.testing.assert_array_equal(delta.dense(), predictor.predict(trajectory)[module].dense())


# --- every registered method ----------------------------------------------------------------------------------------


def test_registry_holds_exactly_the_methods() -> None:
    assert sorted(REGISTRY) == sorted(
        ["next", "next_global", "next_local", "linear", "relex", "alpharl", "repeat_last"]
    )
    for key, cls in REGISTRY.items():
        assert cls.name == key
        assert cls.requires_evaluations is (key == "alpharl")


def fitted(name: str, trajectory: pd.DataFrame, seed: int = 0) -> object:
    options = FAST_NEXT if name.startswith("next") else {}
    extrapolator = REGISTRY[name](options, seed=seed)
    extrapolator.fit(trajectory, evaluations_for(lambda step: 0.2 + 0.01 * step))
    return extrapolator


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_save_load_predicts_identically(
    name: str, tmp_path: Path, linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]]
) -> None:
    trajectory, _ = linear_motion
    extrapolator = fitted(name, trajectory)
    extrapolator.save(tmp_path / name)
    loaded = REGISTRY[name].load(tmp_path / name)
    assert loaded.options == extrapolator.options and loaded.seed == extrapolator.seed
    assert_identical(loaded.predict(trajectory), extrapolator.predict(trajectory))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_fitting_twice_with_the_same_seed_is_identical(
    name: str, linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]]
) -> None:
    trajectory, _ = linear_motion
    assert_identical(fitted(name, trajectory).predict(trajectory), fitted(name, trajectory).predict(trajectory))


def test_next_seed_changes_the_fit(linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]]) -> None:
    trajectory, _ = linear_motion
    first, second = fitted("next", trajectory, seed=0), fitted("next", trajectory, seed=1)
    module = next(iter(SHAPES))
    assert not np.array_equal(first.predict(trajectory)[module].u, second.predict(trajectory)[module].u)


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_unknown_option_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ExtrapolatorError, match=rf"extrapolators\.{name}\b.*'bogus'"):
        REGISTRY[name]({"bogus": 1})


@pytest.mark.parametrize(
    ("cls", "options", "key"),
    [
        (Next, {"hidden": "big"}, "hidden"),
        (NextGlobal, {"lr": "2e-5"}, "lr"),
        (NextLocal, {"sigma_scaling": 1}, "sigma_scaling"),
        (Next, {"device": "tpu"}, "device"),
        (Relex, {"rank": 1.5}, "rank"),
        (AlphaRL, {"window": "all"}, "window"),
        (AlphaRL, {"target_gain": "high"}, "target_gain"),
    ],
)
def test_wrong_typed_option_is_refused_naming_it(cls: type, options: dict, key: str) -> None:
    with pytest.raises(ExtrapolatorError, match=rf"extrapolators\.{cls.name}\.{key}"):
        cls(options)


@pytest.mark.parametrize(
    ("cls", "options", "key"),
    [
        (Next, {"epochs": 0}, "epochs"),
        (NextLocal, {"lr_min": 1.0}, "lr_min"),
        (Relex, {"rank": 0}, "rank"),
        (AlphaRL, {"window": 1}, "window"),
    ],
)
def test_out_of_range_option_is_refused(cls: type, options: dict, key: str) -> None:
    with pytest.raises(ExtrapolatorError, match=rf"extrapolators\.{cls.name}\.{key}:"):
        cls(options)


def test_alpharl_needs_evaluations_at_the_steps_it_uses(
    linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]],
) -> None:
    trajectory, _ = linear_motion
    with pytest.raises(
        ExtrapolatorError, match=r"alpharl needs the round's evaluations.*\[5, 10, 15, 20, 25, 30, 35, 40\]"
    ):
        AlphaRL().fit(trajectory, None)
    partial = evaluations_for(lambda step: 0.01 * step, steps=(5, 10, 20, 30, 35))
    with pytest.raises(ExtrapolatorError, match=r"step\(s\) \[15, 25, 40\]"):
        AlphaRL().fit(trajectory, partial)
    # window = 2 uses steps 5, 10 and the last snapshot 40 only.
    with pytest.raises(ExtrapolatorError, match=r"step\(s\) \[40\]"):
        AlphaRL({"window": 2}).fit(trajectory, partial)
    flat = evaluations_for(lambda step: 0.5)
    with pytest.raises(ExtrapolatorError, match="fewer than 2 distinct values"):
        AlphaRL().fit(trajectory, flat)


def test_unfitted_predict_is_refused(linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]]) -> None:
    for cls in (Next, AlphaRL):
        with pytest.raises(ExtrapolatorError, match="before fit"):
            cls().predict(linear_motion[0])


def test_non_finite_predictions_are_reported(linear_motion: tuple[pd.DataFrame, dict[str, np.ndarray]]) -> None:
    trajectory = linear_motion[0].copy()
    assert all(delta.is_finite() for delta in Linear().predict(trajectory).values())
    trajectory.loc[trajectory["kind"] == "round", "sigma"] = np.nan
    assert not any(delta.is_finite() for delta in Linear().predict(trajectory).values())
    assert not ModuleDelta(
        np.ones((2, 1), np.float32), np.array([np.inf], np.float32), np.ones((2, 1), np.float32)
    ).is_finite()


# --- imports --------------------------------------------------------------------------------------------------------
