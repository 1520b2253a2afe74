"""The RL chunk: exact resume across processes' artifacts, guards, and atomic outputs."""

import copy
import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from nextrl.rl.chunk_layout import TIMING_COLUMNS
from nextrl.rl.lr_schedule import learning_rate
from nextrl.rl.training import RLError, train_order
from nextrl.stages import rl_chunk


def _chunk(tiny_setup, config, output, round_index, resume=None, seed=0):
    rl_chunk.run(config, start_model=tiny_setup["base"], resume=resume, jump_selection=None, data=tiny_setup["data"],
                 output=output, seed=seed, round_index=round_index)  # fmt: skip


def test_train_order_is_a_pure_function_of_seed_and_cursor():
    whole = train_order(5, 0, 30, 7)
    assert list(whole[:12]) + list(train_order(5, 12, 18, 7)) == list(whole)
    assert sorted(whole[:7]) == list(range(7))  # one epoch is a permutation


def _two_chunks_and_one_run(tiny_setup, config, tmp_path):
    """round0 + round1 (resumed) and one run of both chunks' steps (``whole``); returns the chunk length."""
    steps = config["rl"]["chunk_steps"]
    _chunk(tiny_setup, config, tmp_path / "round0", 0)
    _chunk(tiny_setup, config, tmp_path / "round1", 1, resume=tmp_path / "round0")
    continuous = copy.deepcopy(config)
    continuous["rl"]["chunk_steps"] = 2 * steps
    _chunk(tiny_setup, continuous, tmp_path / "whole", 0)
    return steps


def _same_metrics(tmp_path):
    metrics = pd.concat([pd.read_parquet(tmp_path / f"round{r}" / "metrics.parquet") for r in (0, 1)])
    expected = pd.read_parquet(tmp_path / "whole" / "metrics.parquet")
    pd.testing.assert_frame_equal(
        metrics.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True), expected.drop(columns=list(TIMING_COLUMNS))
    )


def test_learning_rate_warms_up_then_stays_or_decays_by_hand():
    rl = {"lr": 1.0, "lr_warmup_steps": 4, "lr_schedule": "cosine", "lr_decay_steps": 10, "lr_min_ratio": 0.1}
    assert [learning_rate(rl, step) for step in (1, 2, 4)] == [0.25, 0.5, 1.0]
    assert learning_rate(rl, 9) == pytest.approx(0.55)  # half-way down the cosine: 0.1 + 0.9 · 0.5
    assert learning_rate(rl, 14) == pytest.approx(0.1) and learning_rate(rl, 40) == pytest.approx(0.1)
    constant = {**rl, "lr_schedule": "constant"}
    assert learning_rate(constant, 2) == 0.5 and learning_rate(constant, 40) == 1.0


@pytest.mark.parametrize(
    "schedule", [{}, {"lr_warmup_steps": 3, "lr_schedule": "cosine", "lr_decay_steps": 4}], ids=["constant", "warmup"]
)
def test_chunked_rl_equals_one_continuous_run(tiny_setup, test_config, tmp_path, schedule):
    test_config["rl"].update(schedule)
    steps = _two_chunks_and_one_run(tiny_setup, test_config, tmp_path)
    lrs = pd.read_parquet(tmp_path / "whole" / "metrics.parquet")["lr"].tolist()
    assert lrs == [learning_rate(test_config["rl"], step) for step in range(1, 2 * steps + 1)]
    # warm-up over steps 1–3, decay over 4–7, the floor at 8: the schedule crosses the chunk boundary (step 4)
    assert len(set(lrs)) == (1 if not schedule else 7)

    chunked = load_file(tmp_path / "round1" / "state" / "adapter" / "adapter_model.safetensors")
    whole = load_file(tmp_path / "whole" / "state" / "adapter" / "adapter_model.safetensors")
    assert chunked.keys() == whole.keys()
    for key in whole:
        assert torch.equal(chunked[key], whole[key]), key
    assert not torch.equal(whole[next(k for k in whole if "lora_B" in k)], torch.zeros(1))  # it trained
    _same_metrics(tmp_path)
    snapshot = f"step_{steps + 1}"
    assert torch.equal(
        load_file(tmp_path / "round1" / "snapshots" / snapshot / "adapter_model.safetensors")[key],
        load_file(tmp_path / "whole" / "snapshots" / snapshot / "adapter_model.safetensors")[key],
    )
    evaluations = pd.read_parquet(tmp_path / "whole" / "eval.parquet")
    assert list(evaluations["step"]) == list(range(0, 2 * steps + 1))
    resumed = pd.read_parquet(tmp_path / "round1" / "eval.parquet")
    assert list(resumed["step"]) == list(range(steps + 1, 2 * steps + 1))  # its start was round 0's last snapshot
    assert list(evaluations.columns) == ["step", "split", "accuracy", "n_items"]


def test_full_parameter_chunks_equal_one_continuous_run(tiny_setup, test_config, tmp_path):
    test_config["rl"].update(mode="full", lr=1e-3)
    steps = _two_chunks_and_one_run(tiny_setup, test_config, tmp_path)

    assert not (tmp_path / "whole" / "state" / "adapter").exists()
    chunked = load_file(tmp_path / "round1" / "state" / "model" / "model.safetensors")
    whole = load_file(tmp_path / "whole" / "state" / "model" / "model.safetensors")
    base = load_file(tiny_setup["base"] / "model.safetensors")
    assert chunked.keys() == whole.keys() == base.keys()
    for key in whole:
        assert torch.equal(chunked[key], whole[key]), key
    changed = [key for key in whole if not torch.equal(whole[key], base[key])]
    assert any("q_proj" in key for key in changed) and any("embed" in key for key in changed)  # every weight trains
    snapshot = load_file(tmp_path / "whole" / "snapshots" / f"step_{2 * steps}" / "weights.safetensors")
    assert all(snapshot[key].dtype == torch.float32 and torch.equal(snapshot[key], whole[key]) for key in snapshot)
    assert set(snapshot) == set(whole)  # tied weights once
    _same_metrics(tmp_path)


def test_non_finite_loss_stops_with_no_output(tiny_setup, test_config, tmp_path, monkeypatch):
    import nextrl.rl.training as training

    real = training.policy_loss

    def exploding(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        return loss * float("nan"), stats

    monkeypatch.setattr(training, "policy_loss", exploding)
    with pytest.raises(RLError, match="non-finite loss .* at RL step 1"):
        _chunk(tiny_setup, test_config, tmp_path / "rl", 0)
    assert list(tmp_path.iterdir()) == []  # nothing partial, not even the staging directory


def test_unknown_lora_target_is_named(tiny_setup, test_config, tmp_path):
    test_config["lora"]["target_modules"] = ["q_proj", "attn_c_proj"]
    with pytest.raises(ValueError, match=r"lora.target_modules: the model has no module named \['attn_c_proj'\]"):
        _chunk(tiny_setup, test_config, tmp_path / "rl", 0)
    assert not (tmp_path / "rl").exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_terminated_stage_removes_its_staging_directory_and_fails(tiny_setup, test_config, tmp_path, signum):
    test_config["rl"].update(chunk_steps=400, snapshot_every=1)  # long enough to be stopped mid-chunk
    output = tmp_path / "rl"
    command = [sys.executable, "-m", "nextrl.cli", "rl_chunk", "--config-json", json.dumps(test_config),
               "--experiment-dir", str(tmp_path), "--start-model", str(tiny_setup["base"]), "--resume=",
               "--jump-selection=", "--data", str(tiny_setup["data"]), "--output", str(output), "--arm", "none",
               "--seed", "0", "--round", "0"]  # fmt: skip
    # started as from `nohup … &`: SIGINT inherited as ignored, which the stage must override with its own handler
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=ignore_sigint)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".rl.*.tmp/rl/snapshots/step_2")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(tmp_path.glob(".rl.*.tmp")), "the chunk never started writing"
    process.send_signal(signum)
    assert process.wait(timeout=60) != 0
    assert not list(tmp_path.glob(".rl.*.tmp")) and not output.exists()
