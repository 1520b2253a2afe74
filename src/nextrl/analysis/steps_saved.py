"""Steps saved: how many plain-RL steps an arm's validation accuracy is worth, on every seed.

The paper's question (arXiv 2604.11446: 250 RL steps with a jump match 400 of plain GRPO, i.e. how many RL steps does
a jump save?), asked per seed against plain RL's own curve instead of against a target that half the seeds miss by
construction:

* envelope — plain RL's validation curve of one seed, made monotone: at step s, the best accuracy at or before s
  (running maximum over its evaluations), linear between evaluations. Noise lifts a running maximum, so the envelope
  is slightly optimistic for plain RL and the steps saved below slightly conservative; plain RL itself scores ≤ 0
  against its own curve wherever it ends below its best evaluation (``none``'s own row is the reference point).
* equivalent steps of an accuracy a — the first step at which the envelope reaches a (inverse linear interpolation).
  Censored where the envelope cannot say: ``above`` when a exceeds everything plain RL reached (the value is then
  plain RL's last step, a lower bound), ``below`` when a is under plain RL's first evaluation (the value is then its
  first step, an upper bound).
* per (arm, seed, plain reference): ``equivalent_steps`` of the arm's last evaluation, ``steps_saved`` = equivalent
  steps − the RL steps the arm ran, ``speedup`` = equivalent steps / RL steps run (> 1: the arm is ahead);
  ``steps_saved_peak``, the largest saving at any of its evaluations after step 0 (a jump's lead right after it,
  which may fade by the end).
* references — ``none`` (plain RL at the jump arms' learning rate) and the fastest plain-RL arm (a higher learning
  rate, say; :func:`fastest_plain`). A jump only
  counts as an acceleration against the latter (docs/method.md, "The extrapolability probe").

Pure functions over the summary's learning curves (:func:`nextrl.analysis.comparison.learning_curves`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CENSORED_ABOVE, CENSORED_BELOW = "above", "below"


def envelope(curve: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Steps and running-maximum accuracies of a plain-RL curve (columns step, accuracy; one point per step, the best
    where a step was evaluated twice)."""
    points = curve.groupby("step")["accuracy"].max().sort_index()
    return points.index.to_numpy(dtype=float), np.maximum.accumulate(points.to_numpy(dtype=float))


def equivalent_steps(accuracy: float, steps: np.ndarray, best: np.ndarray) -> tuple[float, str]:
    """The first step at which the envelope (``steps``, ``best``: :func:`envelope`) reaches ``accuracy``, linearly
    interpolated, and ``""`` — or the envelope's last step and ``"above"`` / first step and ``"below"`` (module
    docstring)."""
    if accuracy > best[-1]:
        return float(steps[-1]), CENSORED_ABOVE
    if accuracy < best[0]:
        return float(steps[0]), CENSORED_BELOW
    reached = int(np.argmax(best >= accuracy))
    if reached == 0:
        return float(steps[0]), ""
    low, high = best[reached - 1], best[reached]
    share = (accuracy - low) / (high - low)
    return float(steps[reached - 1] + share * (steps[reached] - steps[reached - 1])), ""


def in_evaluation_order(curves: pd.DataFrame) -> pd.DataFrame:
    """Learning curves sorted by step; at a jump's step the round's end (``snapshot``) before the next round's start."""
    return curves.sort_values(["step", "point"], kind="stable")


def mapped_evaluations(curves: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Every evaluation of every arm, in evaluation order, with ``equivalent`` steps and ``censored`` on
    ``reference``'s envelope of the same seed (NaN and ``""`` on seeds ``reference`` lacks)."""
    ordered = in_evaluation_order(curves)
    envelopes = {seed: envelope(curve) for seed, curve in ordered[ordered["arm"] == reference].groupby("seed")}
    mapped = [
        equivalent_steps(accuracy, *envelopes[seed]) if seed in envelopes else (math.nan, "")
        for seed, accuracy in zip(ordered["seed"], ordered["accuracy"], strict=True)
    ]
    return ordered.assign(equivalent=[steps for steps, _ in mapped], censored=[flag for _, flag in mapped])


def saved_against(curves: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Per (arm, seed): the arm's last evaluation mapped through ``reference``'s envelope of the same seed —
    ``equivalent_steps``, ``steps_saved``, ``speedup``, ``censored`` — and ``steps_saved_peak`` over all its
    evaluations after step 0; rows of seeds ``reference`` lacks are NaN."""
    rows = []
    for (arm, seed), curve in mapped_evaluations(curves, reference).groupby(["arm", "seed"], sort=False):
        last, later = curve.iloc[-1], curve[curve["step"] > 0]
        steps_run, equivalent = float(last["step"]), float(last["equivalent"])
        speedup = equivalent / steps_run if steps_run else math.nan
        rows.append({"arm": arm, "seed": seed, "steps_run": steps_run, "equivalent_steps": equivalent,
                     "steps_saved": equivalent - steps_run, "speedup": speedup,
                     "censored": last["censored"],
                     "steps_saved_peak": float((later["equivalent"] - later["step"]).max())})  # fmt: skip
    return pd.DataFrame(rows)


def fastest_plain(curves: pd.DataFrame, plain: list[str]) -> str:
    """The plain-RL arm that moves fastest along ``none``'s curve: the largest mean, over its evaluations after step 0
    and over seeds, of equivalent steps on ``none``'s envelope of the same seed / steps run. Every evaluation counts,
    not only the last: two arms that both end beyond ``none``'s best are both censored at its last step, and only
    their way there tells them apart. ``none`` itself when it is the only plain arm; the first plain arm where there
    is no ``none``."""
    reference = "none" if "none" in plain else plain[0]
    mapped = mapped_evaluations(curves[curves["arm"].isin(plain)], reference)
    later = mapped[mapped["step"] > 0]
    speed = (later["equivalent"] / later["step"]).groupby(later["arm"], sort=False).mean()
    return str(speed.idxmax()) if speed.notna().any() else reference


def steps_saved_table(curves: pd.DataFrame, plain: list[str]) -> pd.DataFrame:
    """Per (arm, seed): steps saved against ``none`` (columns ``equivalent_steps``, ``steps_saved``, ``speedup``,
    ``censored``) and against the fastest plain arm (the same with ``_fastest``, and ``fastest_plain``)."""
    reference = "none" if "none" in plain else plain[0]
    fastest = fastest_plain(curves, plain)
    same = saved_against(curves, reference)
    against_fastest = saved_against(curves, fastest).drop(columns="steps_run")
    table = same.merge(against_fastest, on=["arm", "seed"], suffixes=("", "_fastest"), validate="one_to_one")
    return table.assign(fastest_plain=fastest)
