"""Runs trained elsewhere: the LoRA snapshots of a run directory in a known layout, checked and copied as the
``step_<t>/`` snapshots the trajectory stage reads (issue 9, "import a run trained elsewhere").

Layouts (t, the global RL step, is read from the directory name; each snapshot is a PEFT adapter directory with
``adapter_config.json`` and ``adapter_model.safetensors``):

* ``verl`` — ``global_step_<t>/actor/lora_adapter/`` (verl's checkpoint manager with LoRA);
* ``hf_trainer`` — ``checkpoint-<t>/`` holding the adapter files (Hugging Face Trainer, TRL's trainers with peft);
* ``peft`` — ``step_<t>/`` (plain PEFT snapshots; nextrl's own ``rl/snapshots/``).

:func:`read_accuracy` reads an optional per-step accuracy table (the eval.parquet an extrapolator such as AlphaRL fits).

Every check names the run directory or snapshot: no recognised layout (or more than one), a base model whose weight
shapes do not match the adapters (read from the safetensors headers: no model is loaded). Snapshots whose LoRA rank,
targets or scale differ, and too few snapshots for the horizon, are the trajectory stage's own checks
(:func:`nextrl.lowrank.trajectory_table.check_compatible`), which every imported run goes through.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from safetensors import safe_open

from nextrl.lowrank.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, Adapter, base_weight_name, is_adapter_dir
from nextrl.rl.chunk_layout import snapshot_path

LAYOUTS: dict[str, tuple[re.Pattern[str], str]] = {
    "verl": (re.compile(r"^global_step_(\d+)$"), "actor/lora_adapter"),
    "hf_trainer": (re.compile(r"^checkpoint-(\d+)$"), "."),
    "peft": (re.compile(r"^step_(\d+)$"), "."),
}
"""Layout name → (the snapshot directory's name pattern, the adapter's path inside it)."""


class RunImportError(ValueError):
    """A run directory or base model that cannot be imported; the message names the path and what was expected."""


def find_snapshots(run_dir: Path) -> tuple[str, dict[int, Path]]:
    """(layout name, step → adapter directory) of the one layout ``run_dir`` holds."""
    if not run_dir.is_dir():
        raise RunImportError(f"import.run_dir: {run_dir} is not a directory")
    found = {}
    for layout, (pattern, inside) in LAYOUTS.items():
        snapshots = {
            int(match[1]): path / inside
            for path in run_dir.iterdir()
            if (match := pattern.match(path.name)) and is_adapter_dir(path / inside)
        }
        if snapshots:
            found[layout] = dict(sorted(snapshots.items()))
    if not found:
        expected = "; ".join(f"{layout}: {pattern.pattern} / {inside}" for layout, (pattern, inside) in LAYOUTS.items())
        seen = sorted(path.name for path in run_dir.iterdir())[:8]
        raise RunImportError(
            f"import.run_dir: {run_dir} has no LoRA snapshots in a recognised layout ({expected}); it holds {seen}"
        )
    if len(found) > 1:
        raise RunImportError(f"import.run_dir: {run_dir} mixes layouts {sorted(found)}; point it at one run")
    return next(iter(found.items()))


def base_shapes(base_dir: Path) -> dict[str, tuple[int, ...]]:
    """Every weight's shape in a HF model directory, from its safetensors headers (sharded or not)."""
    files = sorted(base_dir.glob("*.safetensors"))
    if not files:
        raise RunImportError(f"import.base_model: {base_dir} holds no *.safetensors weights")
    shapes = {}
    for path in files:
        with safe_open(path, framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118  (safe_open has keys(), not iteration)
                shapes[key] = tuple(weights.get_slice(key).get_shape())
    return shapes


def check_base_shapes(base_dir: Path, adapter: Adapter) -> None:
    """Each adapted module's base weight exists with shape (out, in) = (B rows, A columns)."""
    shapes = base_shapes(base_dir)
    for module, (b, a) in adapter.factors.items():
        name = base_weight_name(module)
        if name not in shapes:
            raise RunImportError(f"import.base_model: {base_dir} has no weight {name} for adapter module {module}")
        needed = (b.shape[0], a.shape[1])
        if shapes[name] != needed:
            raise RunImportError(
                f"import.base_model: {name} is {shapes[name]} in {base_dir}, the adapters need {needed}"
            )


def copy_snapshots(snapshots: Mapping[int, Path], output: Path) -> None:
    """Each snapshot's adapter files as ``output/step_<t>/`` (the trajectory stage's input)."""
    for step, source in snapshots.items():
        target = snapshot_path(output, step)
        target.mkdir(parents=True)
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            shutil.copy2(source / name, target / name)


def read_accuracy(path: Path) -> pd.DataFrame:
    """A per-step validation accuracy table (CSV or Parquet with columns ``step`` and ``accuracy``) as eval rows
    (step, split = validation, accuracy, n_items = 0: the item count is not known)."""
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = sorted({"step", "accuracy"} - set(table.columns))
    if missing:
        raise RunImportError(f"import.accuracy: {path} lacks the column(s) {missing} (has {list(table.columns)})")
    if not table["accuracy"].between(0, 1).all():
        raise RunImportError(f"import.accuracy: {path} has accuracies outside [0, 1]")
    rows = table[["step", "accuracy"]].astype({"step": "int64", "accuracy": "float64"}).sort_values("step")
    return rows.assign(split="validation", n_items=0)[["step", "split", "accuracy", "n_items"]]
