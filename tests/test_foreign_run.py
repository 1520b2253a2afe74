"""Runs trained elsewhere: each layout, built out of the project's own snapshots, gives the same trajectory."""

import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from nextrl.lowrank.adapters import load_adapter, load_snapshots
from nextrl.lowrank.foreign_run import RunImportError, check_base_shapes, copy_snapshots, find_snapshots
from nextrl.lowrank.trajectory_table import TrajectoryError, check_compatible
from nextrl.stages import rl_chunk, trajectory

LAYOUT_PATHS = {
    "verl": "global_step_{}/actor/lora_adapter",
    "hf_trainer": "checkpoint-{}",
    "peft": "step_{}",
}


@pytest.fixture(scope="module")
def snapshots(tiny_setup, tmp_path_factory):
    from tests.conftest import load_test_config

    output = tmp_path_factory.mktemp("run") / "rl"
    rl_chunk.run(load_test_config(), start_model=tiny_setup["base"], resume=None, jump_selection=None,
                 data=tiny_setup["data"], output=output, seed=2, round_index=0)  # fmt: skip
    return output / "snapshots"


def layout_tree(snapshots, root, layout):
    """The run's snapshots laid out as ``layout`` writes them, with a trainer's other files beside each."""
    for step_dir in snapshots.iterdir():
        target = root / LAYOUT_PATHS[layout].format(step_dir.name.removeprefix("step_"))
        shutil.copytree(step_dir, target)
        (target.parent / "trainer_state.json").write_text("{}")
    return root


def trajectory_of(config, snapshot_dir, output):
    trajectory.run(config, snapshots=snapshot_dir, start_adapter=None, offset=None, output=output, round_index=0)
    return pd.read_parquet(output)


@pytest.mark.parametrize("layout", sorted(LAYOUT_PATHS))
def test_each_layout_gives_the_workflows_own_trajectory(layout, snapshots, test_config, tmp_path):
    run_dir = layout_tree(snapshots, tmp_path / "run", layout)
    found_layout, found = find_snapshots(run_dir)
    assert found_layout == layout and list(found) == [1, 2, 3, 4]
    copy_snapshots(found, tmp_path / "imported")
    own = trajectory_of(test_config, snapshots, tmp_path / "own.parquet")
    imported = trajectory_of(test_config, tmp_path / "imported", tmp_path / "imported.parquet")
    pd.testing.assert_frame_equal(own, imported)


def test_no_layout_or_mixed_layouts_are_named(snapshots, tmp_path):
    (tmp_path / "empty" / "logs").mkdir(parents=True)
    with pytest.raises(RunImportError, match=r"no LoRA snapshots in a recognised layout .*global_step_.*\['logs'\]"):
        find_snapshots(tmp_path / "empty")
    mixed = layout_tree(snapshots, tmp_path / "mixed", "verl")
    shutil.copytree(snapshots / "step_1", mixed / "checkpoint-1")
    with pytest.raises(RunImportError, match=r"mixes layouts \['hf_trainer', 'verl'\]"):
        find_snapshots(mixed)
    with pytest.raises(RunImportError, match="is not a directory"):
        find_snapshots(tmp_path / "absent")


def test_snapshots_whose_rank_or_targets_differ_are_rejected(snapshots):
    adapters = load_snapshots(snapshots)
    for step, adapter in adapters.items():
        check_compatible(adapters[1], adapter, f"snapshot step_{step}")
    first = adapters[1]
    module = next(iter(first.factors))
    b, a = first.factors[module]
    wider = type(first)(
        {**first.factors, module: (torch.cat([b, b], 1), torch.cat([a, a], 0))}, first.scale, first.config
    )
    with pytest.raises(TrajectoryError, match=rf"step_2: module {module} has LoRA rank {2 * b.shape[1]}"):
        check_compatible(first, wider, "snapshot step_2")
    fewer = type(first)({m: f for m, f in first.factors.items() if m != module}, first.scale, first.config)
    with pytest.raises(TrajectoryError, match="step_3: mismatched LoRA targets"):
        check_compatible(first, fewer, "snapshot step_3")


def test_a_base_whose_shapes_do_not_match_the_adapters_is_rejected(tiny_setup, snapshots, tmp_path):
    adapter = load_adapter(snapshots / "step_1")
    check_base_shapes(tiny_setup["base"], adapter)
    base = tmp_path / "base"
    base.mkdir()
    weights = load_file(tiny_setup["base"] / "model.safetensors")
    name = "model.layers.0.self_attn.q_proj.weight"
    weights[name] = torch.zeros(weights[name].shape[0] + 1, weights[name].shape[1])
    save_file(weights, base / "model.safetensors")
    with pytest.raises(RunImportError, match=rf"{name} is \(\d+, \d+\) in .*, the adapters need"):
        check_base_shapes(base, adapter)
    del weights[name]
    save_file(weights, base / "model.safetensors")
    with pytest.raises(RunImportError, match=f"has no weight {name}"):
        check_base_shapes(base, adapter)
    with pytest.raises(RunImportError, match="holds no"):
        check_base_shapes(tmp_path, adapter)
