"""Comparing arms from their artifacts: learning curves, steps saved, steps-to-target, confidence intervals, the
held-out table.

Pure functions over the tables the stages wrote; the summary stage (:mod:`nextrl.stages.summary`) hands them the
paths its rule lists and writes the results. Definitions (issue 8; docs/method.md, "References" for ICER):

* curves — arm, seed, round, step, accuracy, point (start|snapshot): validation accuracy vs cumulative RL steps; a
  jump that changed the weights gives two points at its step (the round's end and the next round's start).
* steps saved (the headline) — per seed, the arm's last validation accuracy mapped through plain RL's curve of the
  same seed to plain-RL-equivalent steps, against ``none`` and against the fastest plain-RL arm
  (:mod:`nextrl.analysis.steps_saved`); defined on every seed, censored where an arm ends beyond what plain RL
  reached.
* target (secondary) — mean over seeds of the mean of ``none``'s last ``WINDOW`` evaluations (its final accuracy,
  smoothed).
* steps_to_target — first RL step at which the ``WINDOW``-point rolling mean of an arm's curve (in evaluation order)
  reaches the target; NaN if it never does. A window of one evaluation would let a noisy point decide.
* ratio_to_none — steps_to_target over ``none``'s mean steps_to_target over the seeds that reached the target
  (``none`` itself misses its own mean final accuracy in the seeds that end below the mean; ``reached`` counts them);
  ratio_to_fastest_plain — over the fastest plain-RL arm's by this measure (``target_fastest_plain``: ``none`` or a
  variant of it, e.g. a higher learning rate; only arms that reached the target in at least half their seeds are
  candidates).
* acceleration — steps saved against the fastest plain arm (``steps_saved_fastest``) above 0 with its whole 95 %
  interval, and test accuracy no lower than that arm's (its mean minus its 95 % half-width). Jumps only count as an
  acceleration against the fastest plain arm: scaling a slow run's delta can look much like training at a higher
  learning rate (docs/method.md, "The extrapolability probe").
* ICER — RL steps run / test-accuracy gain over the base model in points; lower is better.
* confidence intervals — mean ± Student-t 95 % half-width over seeds.
* probe table — per (arm, round): mean validation accuracy along the round's own ray at every k, the best k and
  whether some k > 1 beats k = 1 (:mod:`nextrl.lowrank.ray`).
* ablation table — the paper's NExt ablations (§3: without the global input, without the local input) beside plain
  RL: the main table's rows of the arms that run ``none``, ``next``, ``next_global`` or ``next_local``.
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

from nextrl.analysis.steps_saved import CENSORED_ABOVE, CENSORED_BELOW, in_evaluation_order, steps_saved_table
from nextrl.experiment import round_start_step

RUN_FIELDS = (
    "arm",
    "seed",
    "round",
    "training",
    "rl",
    "selection",
    "fit",
    "heldout",
    "probe",
    "trajectory",
    "test",
    "rl_benchmark",
    "overhead_benchmarks",
)
"""A run record: one (arm, seed, round), how it trains (``lora`` or ``full``) and the paths of its artifacts (None
where the round has none)."""


def learning_curves(runs: list[Mapping[str, Any]], config: Mapping[str, Any]) -> pd.DataFrame:
    """Validation accuracy of every run's eval.parquet, marked start (the round's first step) or snapshot."""
    frames = []
    for run in runs:
        evaluations = pd.read_parquet(Path(run["rl"]) / "eval.parquet")
        starts = evaluations["step"] == round_start_step(config, run["round"])
        point = starts.map({True: "start", False: "snapshot"})
        frames.append(evaluations.assign(arm=run["arm"], seed=run["seed"], round=run["round"], point=point))
    return pd.concat(frames, ignore_index=True)[["arm", "seed", "round", "step", "accuracy", "point"]]


WINDOW = 3
"""Evaluations in the rolling mean of steps_to_target and in the final accuracy that sets the target."""


def steps_to_target(curve: pd.DataFrame, target: float) -> float:
    """First RL step at which the WINDOW-point rolling mean of ``curve`` (rows in evaluation order) reaches
    ``target`` (NaN if it never does)."""
    smoothed = curve["accuracy"].rolling(WINDOW).mean()
    reached = curve.loc[smoothed >= target - 1e-12, "step"]
    return float(reached.min()) if len(reached) else math.nan


def step_table(curves: pd.DataFrame, plain: list[str]) -> pd.DataFrame:
    """Per (arm, seed): target, steps_to_target, final validation accuracy (mean of the last WINDOW evaluations),
    ratio_to_none and ratio_to_fastest_plain (module docstring); ``plain`` lists the plain-RL arms."""
    ordered = in_evaluation_order(curves)
    finals = ordered.groupby(["arm", "seed"], sort=False)["accuracy"].apply(lambda a: a.tail(WINDOW).mean())
    reference = "none" if "none" in plain else finals.index.get_level_values("arm")[0]
    target = float(finals.loc[reference].mean())
    table = pd.DataFrame([
        {"arm": arm, "seed": seed, "target": target, "steps_to_target": steps_to_target(curve, target),
         "final_val_accuracy": float(finals.loc[(arm, seed)])}
        for (arm, seed), curve in ordered.groupby(["arm", "seed"], sort=False)
    ])  # fmt: skip
    steps = table.groupby("arm", sort=False)["steps_to_target"]
    mean_steps, reached_share = steps.mean(), steps.agg(lambda s: s.notna().mean())
    candidates = [arm for arm in plain if arm in mean_steps.index and reached_share[arm] >= 0.5]
    fastest = mean_steps[candidates].idxmin() if candidates else None
    table["ratio_to_none"] = table["steps_to_target"] / mean_steps.get("none", math.nan)
    table["target_fastest_plain"] = fastest
    table["ratio_to_fastest_plain"] = table["steps_to_target"] / (mean_steps[fastest] if fastest else math.nan)
    return table


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


def per_seed_table(runs: list[Mapping[str, Any]], curves: pd.DataFrame, plain: list[str]) -> pd.DataFrame:
    """One row per (arm, seed): steps saved (:func:`nextrl.analysis.steps_saved.steps_saved_table`), the step
    table's columns, test accuracy and the wall-clock split RL vs jump overhead."""
    by_arm_and_seed: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for run in runs:
        by_arm_and_seed.setdefault((run["arm"], run["seed"]), []).append(run)
    rows = []
    for (arm, seed), records in by_arm_and_seed.items():
        test = next(record["test"] for record in records if record["test"])
        compute = sum(json.loads(Path(r["fit"]).read_text())["seconds"] for r in records if r["fit"])
        compute += sum(float(pd.read_parquet(r["selection"])["seconds"].sum()) for r in records if r["selection"])
        metrics = [pd.read_parquet(Path(r["rl"]) / "metrics.parquet") for r in records]
        rows.append({
            "arm": arm, "seed": seed, "test_accuracy": float(pd.read_parquet(test)["reward"].mean()),
            "rl_steps": sum(len(m) for m in metrics), "rl_seconds": sum(float(m["seconds"].sum()) for m in metrics),
            "rl_job_seconds": sum(benchmark_seconds(r["rl_benchmark"]) for r in records),
            "overhead_seconds": sum(benchmark_seconds(path) for r in records for path in r["overhead_benchmarks"]),
            "overhead_compute_seconds": compute,
        })  # fmt: skip
    measures = steps_saved_table(curves, plain).merge(
        step_table(curves, plain), on=["arm", "seed"], validate="one_to_one"
    )
    return measures.merge(pd.DataFrame(rows), on=["arm", "seed"], validate="one_to_one")


def heldout_table(runs: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Per method: (round, module) pairs scored, rounds it could not fit, mean rank-1 cosine, share of positive
    cosines, median relative error and σ ratio."""
    scored = stacked(runs, "heldout")
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


def stacked(runs: list[Mapping[str, Any]], field: str) -> pd.DataFrame:
    """The Parquet tables at ``run[field]`` of every run that has one, stacked, each row tagged with its run's arm,
    seed and round; an empty frame when no run has one."""
    frames = [
        pd.read_parquet(run[field]).assign(arm=run["arm"], seed=run["seed"], round=run["round"])
        for run in runs
        if run[field]
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["arm", "seed", "round"])


def probe_table(probe: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, round) of the stacked probe tables: mean accuracy over seeds along the round's own ray at every k
    (columns k=…), the best k, and whether accuracy at some k > 1 beats k = 1 (``rises_beyond_1``)."""
    if probe.empty:
        return pd.DataFrame(columns=["arm", "round", "best_k", "rises_beyond_1", "seeds"])
    means = probe.groupby(["arm", "round", "k"], sort=False)["accuracy"].mean().unstack("k")
    summary = means.rename(columns=lambda k: f"k={k:g}")
    summary["best_k"] = means.idxmax(axis=1)
    summary["rises_beyond_1"] = means[[k for k in means.columns if k > 1]].max(axis=1) > means[1.0]
    summary["seeds"] = probe.groupby(["arm", "round"], sort=False)["seed"].nunique()
    return summary.reset_index()


def arm_table(per_seed: pd.DataFrame, base_test_accuracy: float, plain: list[str]) -> pd.DataFrame:
    """Per arm: means and 95 % intervals over seeds of the per-seed table, ICER and the acceleration verdict (module
    docstring); ``plain`` lists the plain-RL arms (no verdict)."""
    rows = []
    for arm, group in per_seed.groupby("arm", sort=False):
        saved = {}
        for suffix in ("", "_fastest"):
            for column in ("steps_saved", "speedup", "steps_saved_peak"):
                mean, half = confidence_interval(group[f"{column}{suffix}"])
                saved |= {f"{column}{suffix}_mean": mean, f"{column}{suffix}_ci95": half}
            censored = group[f"censored{suffix}"]
            saved[f"censored{suffix}"] = (f"{(censored == CENSORED_ABOVE).sum()} above, "
                                          f"{(censored == CENSORED_BELOW).sum()} below")  # fmt: skip
        test_mean, test_half = confidence_interval(group["test_accuracy"])
        none_mean, none_half = confidence_interval(group["ratio_to_none"])
        fastest_mean, fastest_half = confidence_interval(group["ratio_to_fastest_plain"])
        gain = test_mean - base_test_accuracy
        rows.append({
            "arm": arm, "seeds": len(group), "fastest_plain": group["fastest_plain"].iloc[0], **saved,
            "steps_to_target_mean": group["steps_to_target"].mean(),
            "reached": int(group["steps_to_target"].notna().sum()),
            "ratio_to_none_mean": none_mean, "ratio_to_none_ci95": none_half,
            "target_fastest_plain": group["target_fastest_plain"].iloc[0],
            "ratio_to_fastest_plain_mean": fastest_mean, "ratio_to_fastest_plain_ci95": fastest_half,
            "final_val_accuracy_mean": group["final_val_accuracy"].mean(),
            "test_accuracy_mean": test_mean, "test_accuracy_ci95": test_half, "test_gain_over_base": gain,
            "rl_steps": group["rl_steps"].mean(), "icer": group["rl_steps"].mean() / (100 * gain),
            "rl_seconds": group["rl_seconds"].mean(), "rl_job_seconds": group["rl_job_seconds"].mean(),
            "overhead_seconds": group["overhead_seconds"].mean(),
            "overhead_compute_seconds": group["overhead_compute_seconds"].mean(),
            "overhead_share_of_rl_job": group["overhead_seconds"].sum() / group["rl_job_seconds"].sum(),
            "overhead_compute_share_of_rl": group["overhead_compute_seconds"].sum() / group["rl_seconds"].sum(),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    fastest = table.set_index("arm").loc[table["fastest_plain"].iloc[0]]
    faster = table["steps_saved_fastest_mean"] - table["steps_saved_fastest_ci95"] > 0
    faster &= table["test_accuracy_mean"] >= fastest["test_accuracy_mean"] - fastest["test_accuracy_ci95"]
    table["acceleration"] = [None if arm in plain else bool(verdict) for arm, verdict in zip(table["arm"], faster)]
    return table


ABLATION_METHODS = ("none", "next", "next_global", "next_local")
ABLATION_COLUMNS = ("arm", "method", "training", "seeds", "steps_saved_mean", "steps_saved_ci95",
                    "steps_to_target_mean", "ratio_to_none_mean", "ratio_to_none_ci95", "test_accuracy_mean",
                    "test_accuracy_ci95", "icer")  # fmt: skip


def ablation_table(table: pd.DataFrame, methods: Mapping[str, str], training: Mapping[str, str]) -> pd.DataFrame:
    """The main table's rows whose arm runs one of ABLATION_METHODS, with its method and training mode (``methods``
    and ``training``: arm → method, arm → ``lora`` | ``full``): NExt's input ablations beside plain RL, LoRA and
    full-parameter."""
    with_method = table.assign(method=table["arm"].map(methods), training=table["arm"].map(training))
    return with_method.loc[with_method["method"].isin(ABLATION_METHODS), list(ABLATION_COLUMNS)].reset_index(drop=True)
