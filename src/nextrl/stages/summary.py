"""The summary stage: learning curves, steps saved, steps-to-target, final test accuracy, the wall-clock split and the
held-out predictor table, from the artifacts its rule lists (:mod:`nextrl.analysis.comparison` defines every column).

Its rule writes a manifest (a JSON file, so the command line stays short at any experiment size): ``base_test``
(the base model's test.parquet), ``plain_arms``, ``methods`` (arm → method),
``training`` (arm → ``lora`` | ``full``) and ``runs``, one record per (arm, seed, round) with the paths of that round's
artifacts (:data:`nextrl.analysis.comparison.RUN_FIELDS`). Writes one directory atomically: ``curves.parquet``,
``per_seed.parquet`` and ``per_seed.csv`` (per arm and seed), ``table.{md,csv,tex}`` (per arm),
``ablation.{md,csv,tex}`` (NExt's input ablations beside plain RL), ``heldout.{md,csv}`` (per method),
``probe.{md,csv}`` (per arm and round), ``findings.md`` (the paper's §2 claims checked: E1, linear-fit R²), the stage
config as ``config.json`` (what :mod:`nextrl.analysis.cross_experiment` reads), and the tables the figures are drawn
from
(:data:`nextrl.analysis.figures.FIGURES`): ``energy.parquet`` and ``linearity.parquet``
(:mod:`nextrl.analysis.findings`,
on the trajectories the manifest lists: round 0 of the first jump arm and of every full-parameter arm, tagged with
the training mode), ``alpha.parquet`` (every jump's selection sweep) and ``probe_points.parquet`` (every probe
point). No model is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.analysis.comparison import (
    WINDOW,
    ablation_table,
    arm_table,
    heldout_table,
    learning_curves,
    per_seed_table,
    probe_table,
    stacked,
)
from nextrl.analysis.findings import GLOBAL_TOP, TRAINING_WORDS, energy_table, linearity_table, splits_used
from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord


def trajectory_findings(runs: list[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """E1 and linear-fit R² tables of every trajectory in the manifest, tagged with arm and seed."""
    energy, linearity = [], []
    for run in runs:
        if run["trajectory"]:
            trajectory = pd.read_parquet(run["trajectory"], filters=GLOBAL_TOP)
            tags = {"arm": run["arm"], "seed": run["seed"], "training": run["training"]}
            energy.append(energy_table(trajectory).assign(**tags))
            linearity.append(linearity_table(trajectory, run["arm"], run["seed"]).assign(training=run["training"]))
    return (
        pd.concat(energy, ignore_index=True) if energy else pd.DataFrame(),
        pd.concat(linearity, ignore_index=True) if linearity else pd.DataFrame(),
    )


def findings_text(energy: pd.DataFrame, linearity: pd.DataFrame) -> str:
    """The paper's §2 claims checked on this run (docs/method.md, "The paper's §2 findings, checked on every run"), in
    words and numbers, per training mode."""
    if energy.empty:
        return "No trajectory in this experiment (no jump arm, no full-parameter arm): E1 and R² were not measured.\n"
    lines = []
    for training in (mode for mode in TRAINING_WORDS if mode in set(energy["training"])):
        rows = energy[energy["training"] == training]
        steps = rows.groupby(["module_type", "step"])["e1_mean"].mean().unstack("step")
        first, last = steps.columns.min(), steps.columns.max()
        rises = int((steps[last] > steps[first]).sum())
        lines.append(
            f"E1 = σ1/Σσ of the {TRAINING_WORDS[training]} update W_t − W_0, mean over modules and seeds, step {first} "
            f"→ {last}: "
            + ", ".join(f"{name} {row[first]:.3f} → {row[last]:.3f}" for name, row in steps.iterrows())
            + f". It rises in {rises} of {len(steps)} module types; mean over types {steps[last].mean():.3f} at step "
            f"{last} (paper: E1 rises during RLVR, more under LoRA than under full-parameter training)."
        )
    if linearity.empty:
        lines.append("Linear-fit R²: no round had the 4 snapshots a held-out fit needs.")
    for training in (mode for mode in TRAINING_WORDS if mode in set(linearity.get("training", ()))):
        rows = linearity[linearity["training"] == training]
        lines.append(
            f"Linear-fit R² of the rank-1 global delta of the {TRAINING_WORDS[training]} update ({splits_used(rows)} "
            f"snapshots; the paper: 10 → 5), over {len(rows)} (module, seed) fits: {(rows['r2'] < 0).mean():.0%} "
            f"below 0, {(rows['r2'] < -0.5).mean():.0%} below −0.5, median {rows['r2'].median():.3f} "
            "(paper: more than half below 0, some below −0.5)."
        )
    return "\n\n".join(lines) + "\n"


def write_comparison(staging: Path, manifest: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, float]:
    """The arms' comparison into ``staging``: curves, steps saved and to target, the main and the ablation table;
    returns the final test accuracy per arm."""
    runs, plain = manifest["runs"], manifest["plain_arms"]
    curves = learning_curves(runs, config)
    per_seed = per_seed_table(runs, curves, plain)
    base_accuracy = float(curves.loc[curves["step"] == 0, "accuracy"].mean())
    base_test_accuracy = float(pd.read_parquet(manifest["base_test"])["reward"].mean())
    table = arm_table(per_seed, base_test_accuracy, plain)
    ablation = ablation_table(table, manifest["methods"], manifest["training"])
    curves.to_parquet(staging / "curves.parquet", index=False)
    per_seed.to_parquet(staging / "per_seed.parquet", index=False)
    per_seed.to_csv(staging / "per_seed.csv", index=False)
    table.to_csv(staging / "table.csv", index=False)
    table.to_latex(staging / "table.tex", index=False, float_format="%.3f", na_rep="--")
    ablation.to_csv(staging / "ablation.csv", index=False)
    ablation.to_latex(staging / "ablation.tex", index=False, float_format="%.3f", na_rep="--")
    (staging / "ablation.md").write_text(
        "NExt's ablations (paper §3: without the global input, without the local input) beside plain RL, with "
        "LoRA or full-parameter training (`training`); the columns are the main table's (table.md).\n\n"
        + ablation.to_markdown(index=False, floatfmt=".3f") + "\n"
    )  # fmt: skip
    fastest = table["fastest_plain"].iloc[0]
    (staging / "table.md").write_text(
        f"Base model validation accuracy: {base_accuracy:.3f}, test accuracy: {base_test_accuracy:.3f}. Plain-RL "
        f"arms: {', '.join(plain)}; the fastest along `none`'s curve: {fastest}.\n\n"
        "**Steps saved** (per seed, then mean ± 95 % interval over seeds): the arm's last validation accuracy mapped "
        "through plain RL's curve of the same seed (its running maximum, linear between evaluations) to the plain-RL "
        "steps that reach it, minus the steps the arm ran; `speedup` = those steps / steps run. Against `none` "
        f"(`steps_saved`) and against {fastest} (`steps_saved_fastest`). `censored` counts seeds that end beyond all "
        "plain RL reached (`above`: the saving is a lower bound) or below its start (`below`). A jump arm is an "
        f"acceleration only if it saves steps against {fastest} with its whole 95 % interval, at a test accuracy no "
        "lower than that arm's.\n\n"
        f"Secondary: steps to reach `none`'s final validation accuracy (mean of its last {WINDOW} evaluations, mean "
        f"over seeds, = {per_seed['target'].iloc[0]:.3f}; a {WINDOW}-point rolling mean), NaN on the seeds that never "
        "do. ICER = RL steps / test gain over the base in points.\n\n"
        + table.to_markdown(index=False, floatfmt=".3f") + "\n\nPer seed:\n\n"
        + per_seed.to_markdown(index=False, floatfmt=".3f") + "\n"
    )  # fmt: skip
    return {f"{row['arm']}_test_accuracy_mean": float(row["test_accuracy_mean"]) for row in table.to_dict("records")}


def run(config: Mapping[str, Any], *, manifest: Path, output: Path) -> StageRecord:
    """Summarise the artifacts the JSON file ``manifest`` lists. An imported run (manifest ``imported``) has no
    learning curves or test accuracies: only the trajectory findings, the held-out check, the probe and the α sweeps
    are written."""
    manifest = json.loads(Path(manifest).read_text())
    runs = manifest["runs"]
    heldout = heldout_table(runs)
    probe_points = stacked(runs, "probe")
    probe = probe_table(probe_points)
    energy, linearity = trajectory_findings(runs)
    alpha = stacked(runs, "selection")
    with atomic_path(output) as staging:
        staging.mkdir()
        metrics = {} if manifest.get("imported") else write_comparison(staging, manifest, config)
        (staging / "config.json").write_text(json.dumps(config, indent=1))
        heldout.to_csv(staging / "heldout.csv", index=False)
        (staging / "heldout.md").write_text(
            "Held-out prediction of each round's last target W_T − W_{T−H} by every extrapolator fitted on the round "
            "up to T − H (rank-1 cosine: 1 = same direction, −1 = reversed; relative error ‖ΔŴ − Y‖/‖Y‖: predicting "
            "zero scores 1; repeat_last is the trivial baseline).\n\n"
            + (heldout.to_markdown(index=False, floatfmt=".3f") if len(heldout) else "No round was long enough (2H).")
            + "\n"
        )  # fmt: skip
        probe.to_csv(staging / "probe.csv", index=False)
        (staging / "probe.md").write_text(
            "Validation accuracy along each round's own ray W_start + k·(W_T − W_start), mean over seeds; "
            "rises_beyond_1: some k > 1 beats k = 1, so a jump along the run's direction can pay off.\n\n"
            + (probe.to_markdown(index=False, floatfmt=".3f") if len(probe) else "No probe ran.") + "\n"
        )  # fmt: skip
        for name, frame in (("energy", energy), ("linearity", linearity), ("alpha", alpha),
                            ("probe_points", probe_points)):  # fmt: skip
            frame.to_parquet(staging / f"{name}.parquet", index=False)
        (staging / "findings.md").write_text(findings_text(energy, linearity))
    return StageRecord(metrics=metrics, artifacts=[output])
