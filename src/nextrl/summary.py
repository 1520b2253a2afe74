"""The summary stage: learning curves, steps-to-target, final test accuracy and the wall-clock split.

Reads only artifacts: each round's ``rl/eval.parquet`` (validation accuracy at the round start and every
snapshot), ``rl/metrics.parquet``, ``jump/selected/selection.parquet``, the final ``test.parquet`` and the
Snakemake benchmark files of every job. Writes (atomically, as one directory):

* ``curves.parquet`` — arm, seed, round, step, accuracy, point (start|snapshot): validation accuracy vs
  cumulative RL steps; at a jump step an extrapolating arm has two points (the round's end and, after the jump,
  the next round's start), which the figure draws as a vertical segment.
* ``steps_to_target.parquet`` — arm, seed, target, steps_to_target (first RL step whose validation accuracy
  reaches the target; NaN if never), ratio_to_none, final_val_accuracy, test_accuracy, rl_seconds,
  overhead_seconds (trajectory + fit + extrapolate + select job wall time), overhead_compute_seconds
  (in-process fit + selection time, excluding process start-up). Target = mean over seeds of the ``none``
  arm's final validation accuracy.
* ``table.md`` / ``table.csv`` — per arm: mean steps-to-target and ratio, final test accuracy mean ± 95 % CI
  over seeds (Student t) and its gain over the base model's test accuracy (``base_eval/test.parquet``),
  wall-clock RL vs overhead.
* ``accuracy_vs_steps.png`` / ``.pdf`` — one thin line per seed, a thick line for the mean, per arm.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.artifacts import atomic_path

OVERHEAD_STAGES = ("trajectory", "fit", "extrapolate", "select")


def learning_curves(
    experiment_dir: Path, arms: list[str], seeds: list[int], rounds: int, chunk_steps: int
) -> pd.DataFrame:
    frames = []
    for arm in arms:
        for seed in seeds:
            for round_index in range(rounds):
                evaluations = pd.read_parquet(experiment_dir / arm / f"seed{seed}" / f"round{round_index}" / "rl" / "eval.parquet")
                # Only a chunk that did not resume evaluates its start (step r·C); resumed chunks hold snapshots only.
                starts = evaluations["step"] == round_index * chunk_steps
                point = starts.map({True: "start", False: "snapshot"})
                evaluations = evaluations.assign(arm=arm, seed=seed, round=round_index, point=point)
                frames.append(evaluations)
    return pd.concat(frames, ignore_index=True)[["arm", "seed", "round", "step", "accuracy", "point"]]


def steps_to_target(curve: pd.DataFrame, target: float) -> float:
    """First RL step at which validation accuracy reaches ``target`` (NaN if it never does)."""
    reached = curve.loc[curve["accuracy"] >= target - 1e-12, "step"]
    return float(reached.min()) if len(reached) else math.nan


def confidence_interval(values: pd.Series) -> tuple[float, float]:
    """Mean and 95 % half-width (Student t over seeds; 0 for one seed)."""
    from scipy import stats

    values = values.dropna()
    if len(values) < 2:
        return float(values.mean()) if len(values) else math.nan, 0.0
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def _benchmark_seconds(experiment_dir: Path, stage: str, arm: str, seed: int, rounds: int) -> float:
    total = 0.0
    for round_index in range(rounds):
        path = experiment_dir / "benchmarks" / stage / f"{arm}_seed{seed}_round{round_index}.tsv"
        if not path.is_file() and stage == "rl_chunk" and round_index == 0:
            # a jump arm's round 0 is the plain-RL chunk (rule share_first_round): count its RL time too
            path = experiment_dir / "benchmarks" / stage / f"none_seed{seed}_round0.tsv"
        if path.is_file():
            total += float(pd.read_csv(path, sep="\t")["s"].iloc[0])
    return total


def _compute_overhead_seconds(experiment_dir: Path, arm: str, seed: int, rounds: int) -> float:
    total = 0.0
    for round_index in range(rounds - 1):
        round_dir = experiment_dir / arm / f"seed{seed}" / f"round{round_index}"
        manifest = round_dir / "predictor" / "extrapolator.json"
        if manifest.is_file():
            total += float(json.loads(manifest.read_text())["seconds"])
        selection = round_dir / "jump" / "selected" / "selection.parquet"
        if selection.is_file():
            total += float(pd.read_parquet(selection)["seconds"].sum())
    return total


def per_seed_table(experiment_dir: Path, curves: pd.DataFrame, arms: list[str], seeds: list[int], rounds: int) -> pd.DataFrame:
    last = rounds - 1
    finals = curves.sort_values("step").groupby(["arm", "seed"])["accuracy"].last()
    target = float(finals.loc["none"].mean()) if "none" in arms else float(finals.max())
    rows = []
    for arm in arms:
        for seed in seeds:
            curve = curves[(curves["arm"] == arm) & (curves["seed"] == seed)]
            test = pd.read_parquet(experiment_dir / arm / f"seed{seed}" / f"round{last}" / "test.parquet")
            rl_seconds = sum(
                float(pd.read_parquet(experiment_dir / arm / f"seed{seed}" / f"round{r}" / "rl" / "metrics.parquet")["seconds"].sum())
                for r in range(rounds)
            )
            rows.append({
                "arm": arm, "seed": seed, "target": target, "steps_to_target": steps_to_target(curve, target),
                "final_val_accuracy": float(finals.loc[(arm, seed)]), "test_accuracy": float(test["reward"].mean()),
                "rl_seconds": rl_seconds,
                "rl_job_seconds": _benchmark_seconds(experiment_dir, "rl_chunk", arm, seed, rounds),
                "overhead_seconds": sum(_benchmark_seconds(experiment_dir, s, arm, seed, rounds) for s in OVERHEAD_STAGES),
                "overhead_compute_seconds": _compute_overhead_seconds(experiment_dir, arm, seed, rounds),
            })  # fmt: skip
    table = pd.DataFrame(rows)
    none_steps = table.loc[table["arm"] == "none", "steps_to_target"].mean() if "none" in arms else math.nan
    table["ratio_to_none"] = table["steps_to_target"] / none_steps
    return table


def arm_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for arm, group in per_seed.groupby("arm", sort=False):
        test_mean, test_half = confidence_interval(group["test_accuracy"])
        ratio_mean, ratio_half = confidence_interval(group["ratio_to_none"])
        rows.append({
            "arm": arm, "seeds": len(group), "steps_to_target_mean": group["steps_to_target"].mean(),
            "reached": int(group["steps_to_target"].notna().sum()),
            "ratio_to_none_mean": ratio_mean, "ratio_to_none_ci95": ratio_half,
            "final_val_accuracy_mean": group["final_val_accuracy"].mean(),
            "test_accuracy_mean": test_mean, "test_accuracy_ci95": test_half,
            "rl_seconds": group["rl_seconds"].mean(), "rl_job_seconds": group["rl_job_seconds"].mean(),
            "overhead_seconds": group["overhead_seconds"].mean(),
            "overhead_compute_seconds": group["overhead_compute_seconds"].mean(),
            "overhead_share_of_rl_job": group["overhead_seconds"].sum() / group["rl_job_seconds"].sum(),
            "overhead_compute_share_of_rl": group["overhead_compute_seconds"].sum() / group["rl_seconds"].sum(),
        })  # fmt: skip
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame, base_accuracy: float, path_stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (arm, arm_curves) in enumerate(curves.groupby("arm", sort=False)):
        colour = colours[index % len(colours)]
        for _, seed_curve in arm_curves.groupby("seed"):
            axis.plot(seed_curve["step"], seed_curve["accuracy"], color=colour, alpha=0.3, linewidth=1)
        ordered = arm_curves.assign(order=arm_curves["point"].eq("start").astype(int))
        mean = ordered.groupby(["step", "order"], as_index=False)["accuracy"].mean().sort_values(["step", "order"])
        axis.plot(mean["step"], mean["accuracy"], color=colour, linewidth=2.5, label=f"{arm} (mean of {arm_curves['seed'].nunique()} seeds)")
        jumps = arm_curves[(arm_curves["point"] == "start") & (arm_curves["round"] > 0)]["step"].unique()
        for step in jumps:
            axis.axvline(step, color=colour, linestyle=":", linewidth=1)
    axis.axhline(base_accuracy, color="grey", linestyle="--", linewidth=1, label="base model")
    axis.set_xlabel("RL steps consumed")
    axis.set_ylabel("validation accuracy")
    axis.set_title("Held-out accuracy vs RL steps (thin: seeds; dotted: jumps)")
    axis.legend(loc="lower right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path_stem.with_suffix(".png"), dpi=130)
    figure.savefig(path_stem.with_suffix(".pdf"))
    plt.close(figure)


def write_summary(experiment_dir: Path, config: Mapping[str, Any], output: Path) -> pd.DataFrame:
    """Write the summary directory; returns the per-arm table."""
    arms, seeds, rounds = list(config["arms"]), list(config["seeds"]), int(config["rounds"])
    curves = learning_curves(experiment_dir, arms, seeds, rounds, int(config["rl"]["chunk_steps"]))
    per_seed = per_seed_table(experiment_dir, curves, arms, seeds, rounds)
    table = arm_table(per_seed)
    base_accuracy = float(curves[(curves["step"] == 0)]["accuracy"].mean())
    base_test_accuracy = float(pd.read_parquet(experiment_dir / "base_eval" / "test.parquet")["reward"].mean())
    table.insert(table.columns.get_loc("test_accuracy_ci95") + 1, "test_gain_over_base", table["test_accuracy_mean"] - base_test_accuracy)
    with atomic_path(output) as staging:
        staging.mkdir()
        curves.to_parquet(staging / "curves.parquet", index=False)
        per_seed.to_parquet(staging / "steps_to_target.parquet", index=False)
        per_seed.to_csv(staging / "per_seed.csv", index=False)
        table.to_csv(staging / "table.csv", index=False)
        (staging / "table.md").write_text(
            f"Base model validation accuracy: {base_accuracy:.3f}, test accuracy: {base_test_accuracy:.3f}; "
            f"target = mean final validation accuracy of "
            f"`none` = {per_seed['target'].iloc[0]:.3f}\n\n"
            + table.to_markdown(index=False, floatfmt=".3f") + "\n\nPer seed:\n\n"
            + per_seed.to_markdown(index=False, floatfmt=".3f") + "\n"
        )  # fmt: skip
        plot_curves(curves, base_accuracy, staging / "accuracy_vs_steps")
    return table
