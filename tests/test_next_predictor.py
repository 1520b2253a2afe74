"""Tests of the NExt predictor (arXiv 2604.11446 §3) on a synthetic, smoothly moving low-rank trajectory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from nextrl.extrapolator import ModuleDelta
from nextrl.next_predictor import CONFIG_FILE, WEIGHTS_FILE, NextPredictor, l1_loss

SHAPES = {
    "base_model.model.model.layers.0.self_attn.q_proj": (16, 8),
    "base_model.model.model.layers.0.self_attn.k_proj": (16, 8),
    "base_model.model.model.layers.0.mlp.up_proj": (32, 8),
}
SQUARE = {"base_model.model.model.layers.0.self_attn.o_proj": (8, 8)}
STEPS = tuple(range(5, 55, 5))
HORIZON = 15
FAST = {"hidden": 32, "epochs": 50, "lr": 1e-3, "lr_min": 1e-4}


def top_triplets(delta: np.ndarray, count: int) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Top singular triplets with the largest-|entry| of u made positive (the table's sign convention)."""
    u, s, vt = np.linalg.svd(delta, full_matrices=False)
    triplets = []
    for i in range(count):
        sign = np.sign(u[np.argmax(np.abs(u[:, i])), i])
        triplets.append((float(s[i]), (sign * u[:, i]).astype(np.float32), (sign * vt[i]).astype(np.float32)))
    return triplets


def make_trajectory(shapes: dict[str, tuple[int, int]], seed: int = 0) -> pd.DataFrame:
    """Weights W_t = a(t) u(t) v(t)ᵀ + small fixed-direction growth, with u, v rotating smoothly and a(t) growing.

    Modules differ in scale by orders of magnitude (to exercise the σ scaling). W at the round start (t = 0) is 0.
    """
    rng = np.random.default_rng(seed)
    weights: dict[str, dict[int, np.ndarray]] = {}
    for index, (module, (m, n)) in enumerate(shapes.items()):
        qu = np.linalg.qr(rng.standard_normal((m, 3)))[0]
        qv = np.linalg.qr(rng.standard_normal((n, 3)))[0]
        scale = 10.0 ** (index - 2)

        def at(t: int) -> np.ndarray:
            angle = 0.02 * t
            u = np.cos(angle) * qu[:, 0] + np.sin(angle) * qu[:, 1]
            v = np.cos(angle) * qv[:, 0] + np.sin(angle) * qv[:, 1]
            return scale * (t**1.2 * np.outer(u, v) + 0.1 * t * np.outer(qu[:, 2], qv[:, 2]))

        weights[module] = {t: at(t) for t in (0, *STEPS)}

    rows = []
    for module, w in weights.items():
        for position, t in enumerate(STEPS):
            deltas = {"global": w[t] - w[0], "local": w[t] - w[STEPS[position - 1] if position else 0]}
            if t + HORIZON <= STEPS[-1]:
                deltas["target"] = w[t + HORIZON] - w[t]
            for kind, delta in deltas.items():
                triplets = top_triplets(delta, 2)
                total = sum(s for s, _, _ in triplets)
                for k, (sigma, u, v) in enumerate(triplets):
                    rows.append(
                        {
                            "round": np.int32(0),
                            "step": np.int64(t),
                            "module": module,
                            "kind": kind,
                            "k": np.int16(k),
                            "sigma": sigma,
                            "u": u,
                            "v": v,
                            "energy_ratio": triplets[0][0] / total,
                            "frob_norm": float(np.linalg.norm(delta)),
                            "horizon": np.int64(HORIZON),
                        }
                    )
    return pd.DataFrame(rows)


def assert_same_predictions(a: dict[str, ModuleDelta], b: dict[str, ModuleDelta]) -> None:
    assert a.keys() == b.keys()
    for module in a:
        for part in ("u", "sigma", "v"):
            np.testing.assert_array_equal(getattr(a[module], part), getattr(b[module], part), err_msg=module)


def differs(a: dict[str, ModuleDelta], b: dict[str, ModuleDelta]) -> bool:
    return any(
        not np.array_equal(getattr(a[module], part), getattr(b[module], part))
        for module in a
        for part in ("u", "sigma", "v")
    )


def with_rows_changed(trajectory: pd.DataFrame, selected: pd.Series, sigma_factor: float) -> pd.DataFrame:
    """A copy with σ scaled and u, v replaced by a fixed other unit vector in the selected rows."""
    changed = trajectory.copy()
    changed.loc[selected, "sigma"] *= sigma_factor
    for role in ("u", "v"):
        changed[role] = [
            (np.roll(x, 1) if s else x).astype(np.float32) for x, s in zip(changed[role], selected)
        ]
    return changed


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """These networks are tiny: intra-op threads only add overhead, and thrash on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trajectory() -> pd.DataFrame:
    return make_trajectory(SHAPES)


@pytest.fixture(scope="module")
def fitted(trajectory: pd.DataFrame) -> NextPredictor:
    predictor = NextPredictor(FAST)
    predictor.fit(trajectory)
    return predictor


def test_l1_loss_sums_entries_and_averages_samples() -> None:
    prediction = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    assert l1_loss(prediction, target).item() == pytest.approx((3.0 + 2.0) / 2)


def test_groups_keyed_by_role_and_length(fitted: NextPredictor) -> None:
    assert set(fitted.networks) == {"u_16", "u_32", "v_8", "sigma"}
    assert fitted.group_keys == {"sigma": ("sigma", 1), "u_16": ("u", 16), "u_32": ("u", 32), "v_8": ("v", 8)}


def test_u_and_v_of_equal_length_stay_separate() -> None:
    predictor = NextPredictor({**FAST, "epochs": 2})
    log = predictor.fit(make_trajectory({**SHAPES, **SQUARE}))
    assert set(predictor.networks) == {"u_8", "u_16", "u_32", "v_8", "sigma"}
    assert set(log["group"]) == set(predictor.networks)
    assert predictor.networks["u_8"] is not predictor.networks["v_8"]


def test_fit_reduces_loss_and_logs_every_epoch(trajectory: pd.DataFrame) -> None:
    epochs = 300
    log = NextPredictor({"lr": 1e-3, "lr_min": 1e-4, "epochs": epochs}).fit(trajectory)
    assert list(log.columns) == ["epoch", "group", "loss", "lr"]
    assert len(log) == epochs * 4
    for group, rows in log.groupby("group"):
        rows = rows.sort_values("epoch")
        assert rows["epoch"].tolist() == list(range(epochs))
        assert rows["loss"].iloc[-1] < rows["loss"].iloc[0] / 2, group
        assert rows["lr"].iloc[0] == pytest.approx(1e-3)
        assert rows["lr"].is_monotonic_decreasing
        assert rows["lr"].iloc[-1] == pytest.approx(1e-4, rel=1e-2)


def test_predictions_are_rank1_unit_vectors_with_nonnegative_sigma(
    fitted: NextPredictor, trajectory: pd.DataFrame
) -> None:
    predictions = fitted.predict(trajectory)
    assert set(predictions) == set(SHAPES)
    for module, (m, n) in SHAPES.items():
        delta = predictions[module]
        assert delta.u.shape == (m, 1) and delta.v.shape == (n, 1) and delta.sigma.shape == (1,)
        assert delta.u.dtype == delta.v.dtype == delta.sigma.dtype == np.float32
        assert np.linalg.norm(delta.u) == pytest.approx(1.0, abs=1e-5)
        assert np.linalg.norm(delta.v) == pytest.approx(1.0, abs=1e-5)
        assert delta.sigma[0] >= 0
        assert delta.is_finite()


def test_sigma_is_predicted_in_module_scale(fitted: NextPredictor, trajectory: pd.DataFrame) -> None:
    """Modules differ 100× in σ; the scaled σ predictor must give each its own order of magnitude."""
    predictions = fitted.predict(trajectory)
    targets = trajectory[(trajectory["kind"] == "target") & (trajectory["k"] == 0)]
    for module in SHAPES:
        assert fitted.modules[module].sigma_scale > 0
        typical = targets.loc[targets["module"] == module, "sigma"].mean()
        assert 0.1 * typical < predictions[module].sigma[0] < 10 * typical, module


def test_seeded_fits_are_deterministic(fitted: NextPredictor, trajectory: pd.DataFrame) -> None:
    again = NextPredictor(FAST)
    again.fit(trajectory)
    assert_same_predictions(fitted.predict(trajectory), again.predict(trajectory))
    other_seed = NextPredictor({**FAST, "seed": 1})
    other_seed.fit(trajectory)
    assert differs(fitted.predict(trajectory), other_seed.predict(trajectory))


def test_save_load_round_trip(fitted: NextPredictor, trajectory: pd.DataFrame, tmp_path: Path) -> None:
    fitted.save(tmp_path / "model")
    assert (tmp_path / "model" / CONFIG_FILE).is_file()
    keys = load_file(tmp_path / "model" / WEIGHTS_FILE).keys()
    assert "u_16.encoder_g.0.weight" in keys and "sigma.decoder.2.bias" in keys
    loaded = NextPredictor.load(tmp_path / "model")
    assert loaded.options == fitted.options
    assert loaded.modules == fitted.modules
    assert_same_predictions(fitted.predict(trajectory), loaded.predict(trajectory))


def test_parquet_round_trip_of_the_table(fitted: NextPredictor, trajectory: pd.DataFrame, tmp_path: Path) -> None:
    """The table arrives as Parquet (u, v as list<float32>); reading it back must predict the same."""
    path = tmp_path / "trajectory.parquet"
    trajectory.to_parquet(path)
    assert_same_predictions(fitted.predict(trajectory), fitted.predict(pd.read_parquet(path)))


@pytest.mark.parametrize(("inputs", "used", "unused"), [("global", "global", "local"), ("local", "local", "global")])
def test_input_ablation(trajectory: pd.DataFrame, inputs: str, used: str, unused: str) -> None:
    predictor = NextPredictor({**FAST, "inputs": inputs})
    predictor.fit(trajectory)
    for network in predictor.networks.values():
        assert network.decoder[0].in_features == FAST["hidden"]
        assert hasattr(network, f"encoder_{used[0]}") and not hasattr(network, f"encoder_{unused[0]}")
    predictions = predictor.predict(trajectory)
    last = trajectory["step"] == STEPS[-1]
    ignored = with_rows_changed(trajectory, last & (trajectory["kind"] == unused), 3.0)
    assert_same_predictions(predictions, predictor.predict(ignored))
    relevant = with_rows_changed(trajectory, last & (trajectory["kind"] == used), 3.0)
    assert differs(predictions, predictor.predict(relevant))


def test_both_inputs_decoder_width(fitted: NextPredictor) -> None:
    for network in fitted.networks.values():
        assert network.decoder[0].in_features == 2 * FAST["hidden"]


def test_predict_reads_only_the_last_snapshot(fitted: NextPredictor, trajectory: pd.DataFrame) -> None:
    predictions = fitted.predict(trajectory)
    inputs = trajectory["kind"].isin(["global", "local"])
    earlier = with_rows_changed(trajectory, inputs & (trajectory["step"] == STEPS[-2]), 10.0)
    assert_same_predictions(predictions, fitted.predict(earlier))
    shuffled = trajectory.sample(frac=1.0, random_state=0)
    assert_same_predictions(predictions, fitted.predict(shuffled))
    last = with_rows_changed(trajectory, inputs & (trajectory["step"] == STEPS[-1]), 10.0)
    assert differs(predictions, fitted.predict(last))


def test_non_finite_prediction_is_returned_and_reported(trajectory: pd.DataFrame) -> None:
    predictor = NextPredictor({**FAST, "epochs": 2})
    predictor.fit(trajectory)
    with torch.no_grad():
        predictor.networks["u_32"].decoder[2].bias.fill_(float("nan"))
    predictions = predictor.predict(trajectory)
    assert not predictions["base_model.model.model.layers.0.mlp.up_proj"].is_finite()
    assert predictions["base_model.model.model.layers.0.self_attn.q_proj"].is_finite()


def test_predict_rejects_unfitted_and_unknown_modules(fitted: NextPredictor, trajectory: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="before fit"):
        NextPredictor(FAST).predict(trajectory)
    stranger = trajectory.assign(module=trajectory["module"].str.replace("layers.0", "layers.7"))
    with pytest.raises(ValueError, match="layers.7"):
        fitted.predict(stranger)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hiden": 8}, "hiden"),
        ({"inputs": "velocity"}, "inputs"),
        ({"epochs": 0}, "epochs"),
        ({"lr": "fast"}, "lr"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_options_are_named(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NextPredictor(options)


def test_yaml_style_float_strings_are_accepted() -> None:
    assert NextPredictor({"lr": "2e-5"}).options.lr == 2e-5
