"""Comparing arms from their artifacts: learning curves, steps-to-target, confidence intervals, the held-out table.

Pure functions over the tables the stages wrote; the summary stage (:mod:`nextrl.stages.summary`) hands them the
paths its rule lists and writes the results. Definitions:

* curves — arm, seed, round, step, accuracy, point (start|snapshot): validation accuracy vs cumulative RL steps; a
  jump that changed the weights gives two points at its step (the round's end and the next round's start).
* steps_to_target — first RL step whose validation accuracy reaches the target (NaN if never); target = mean
  over seeds of the ``none`` arm's final validation accuracy; ratio_to_none divides by ``none``'s mean steps.
* confidence intervals — mean ± Student-t 95 % half-width over seeds.
* probe table — per (arm, round): mean validation accuracy along the round's own ray at every k, the best k and
  whether some k > 1 beats k = 1 (:mod:`nextrl.probe`).
* held-out table — per method: mean rank-1 cosine and median relative error over (round, module), the share of
  modules with a positive cosine; ``repeat_last`` is the trivial baseline, a zero prediction scores error 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.config import round_start_step

RUN_FIELDS = (
    "arm",
    "seed",
    "round",
    "rl",
    "selection",
    "fit",
    "heldout",
    "test",
    "rl_benchmark",
    "overhead_benchmarks",
)
"""A run record: one (arm, seed, round) and the paths of its artifacts (None where the round has none)."""


def learning_curves(runs: list[Mapping[str, Any]], config: Mapping[str, Any]) -> pd.DataFrame:
    """Validation accuracy of every run's eval.parquet, marked start (the round's first step) or snapshot."""
    frames = []
    for run in runs:
        evaluations = pd.read_parquet(Path(run["rl"]) / "eval.parquet")
        starts = evaluations["step"] == round_start_step(config, run["round"])
        point = starts.map({True: "start", False: "snapshot"})
        frames.append(evaluations.assign(arm=run["arm"], seed=run["seed"], round=run["round"], point=point))
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


def benchmark_seconds(path: str | None) -> float:
    """Wall seconds of one Snakemake benchmark file (0 when the job has none)."""
    return float(pd.read_csv(path, sep="\t")["s"].iloc[0]) if path and Path(path).is_file() else 0.0


def per_seed_table(runs: list[Mapping[str, Any]], curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, seed): steps-to-target, final accuracies and the wall-clock split RL vs jump overhead."""
    finals = curves.sort_values(["step", "point"]).groupby(["arm", "seed"])["accuracy"].last()
    arms = list(dict.fromkeys(run["arm"] for run in runs))
    target = float(finals.loc["none"].mean()) if "none" in arms else float(finals.max())
    rows = []
    by_arm_and_seed: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for run in runs:
        by_arm_and_seed.setdefault((run["arm"], run["seed"]), []).append(run)
    for (arm, seed), records in by_arm_and_seed.items():
        test = next(record["test"] for record in records if record["test"])
        curve = curves[(curves["arm"] == arm) & (curves["seed"] == seed)]
        compute = sum(json.loads(Path(r["fit"]).read_text())["seconds"] for r in records if r["fit"])
        compute += sum(float(pd.read_parquet(r["selection"])["seconds"].sum()) for r in records if r["selection"])
        rl_seconds = sum(float(pd.read_parquet(Path(r["rl"]) / "metrics.parquet")["seconds"].sum()) for r in records)
        rows.append({
            "arm": arm, "seed": seed, "target": target, "steps_to_target": steps_to_target(curve, target),
            "final_val_accuracy": float(finals.loc[(arm, seed)]),
            "test_accuracy": float(pd.read_parquet(test)["reward"].mean()), "rl_seconds": rl_seconds,
            "rl_job_seconds": sum(benchmark_seconds(r["rl_benchmark"]) for r in records),
            "overhead_seconds": sum(benchmark_seconds(path) for r in records for path in r["overhead_benchmarks"]),
            "overhead_compute_seconds": compute,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    none_steps = table.loc[table["arm"] == "none", "steps_to_target"].mean() if "none" in arms else math.nan
    table["ratio_to_none"] = table["steps_to_target"] / none_steps
    return table


def heldout_table(runs: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Per method: (round, module) pairs scored, rounds it could not fit, mean rank-1 cosine, share of positive
    cosines, median relative error and σ ratio."""
    frames = [
        pd.read_parquet(r["heldout"]).assign(arm=r["arm"], seed=r["seed"], round=r["round"])
        for r in runs
        if r["heldout"]
    ]
    scored = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["method"])
    if scored.empty:
        return pd.DataFrame(
            columns=["method", "pairs", "rank1_cosine_mean", "positive_cosine_share", "relative_error_median"]
        )
    failed = scored["error"].fillna("") != ""
    grouped = scored[~failed].groupby("method")
    methods = pd.Index(list(dict.fromkeys(scored["method"])), name="method")
    return pd.DataFrame({
        "pairs": grouped.size().reindex(methods, fill_value=0),
        "rounds_failed": scored.loc[failed, "method"].value_counts().reindex(methods, fill_value=0),
        "rank1_cosine_mean": grouped["rank1_cosine"].mean().reindex(methods),
        "positive_cosine_share": grouped["rank1_cosine"].apply(lambda c: float((c > 0).mean())).reindex(methods),
        "relative_error_median": grouped["relative_error"].median().reindex(methods),
        "sigma_ratio_median": grouped["sigma_ratio"].median().reindex(methods),
    }).reset_index()  # fmt: skip


def probe_table(runs: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Per (arm, round): mean accuracy over seeds along the round's own ray at every k (columns k=…), the best k,
    and whether accuracy at some k > 1 beats k = 1 (``rises_beyond_1``)."""
    frames = [pd.read_parquet(run["probe"]) for run in runs if run["probe"]]
    if not frames:
        return pd.DataFrame(columns=["arm", "round", "best_k", "rises_beyond_1", "seeds"])
    probe = pd.concat(frames, ignore_index=True)
    means = probe.groupby(["arm", "round", "k"], sort=False)["accuracy"].mean().unstack("k")
    summary = means.rename(columns=lambda k: f"k={k:g}")
    summary["best_k"] = means.idxmax(axis=1)
    summary["rises_beyond_1"] = means[[k for k in means.columns if k > 1]].max(axis=1) > means[1.0]
    summary["seeds"] = probe.groupby(["arm", "round"], sort=False)["seed"].nunique()
    return summary.reset_index()


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
