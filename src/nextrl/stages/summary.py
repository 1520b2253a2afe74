"""The summary stage: learning curves, steps-to-target, final test accuracy, the wall-clock split and the held-out
predictor table, from the artifacts its rule lists (:mod:`nextrl.comparison` defines every column).

The rule passes a manifest: ``base_test`` (the base model's test.parquet), ``plain_arms`` and ``runs``, one record per
(arm, seed, round) with the paths of that round's artifacts (:data:`nextrl.comparison.RUN_FIELDS`). Writes one
directory atomically: ``curves.parquet``, ``steps_to_target.parquet`` and ``per_seed.csv`` (per arm and seed),
``table.{md,csv}`` (per arm), ``heldout.{md,csv}`` (per method), ``probe.{md,csv}`` (per arm and round) and
``accuracy_vs_steps.{png,pdf}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.artifacts import atomic_path
from nextrl.comparison import WINDOW, arm_table, heldout_table, learning_curves, per_seed_table, probe_table
from nextrl.figures import plot_curves
from nextrl.tracking import StageRecord


def run(config: Mapping[str, Any], *, manifest: Mapping[str, Any], output: Path) -> StageRecord:
    runs, plain = manifest["runs"], manifest["plain_arms"]
    curves = learning_curves(runs, config)
    per_seed = per_seed_table(runs, curves, plain)
    base_accuracy = float(curves.loc[curves["step"] == 0, "accuracy"].mean())
    base_test_accuracy = float(pd.read_parquet(manifest["base_test"])["reward"].mean())
    table = arm_table(per_seed, base_test_accuracy, plain)
    heldout = heldout_table(runs)
    probe = probe_table(runs)
    with atomic_path(output) as staging:
        staging.mkdir()
        curves.to_parquet(staging / "curves.parquet", index=False)
        per_seed.to_parquet(staging / "steps_to_target.parquet", index=False)
        per_seed.to_csv(staging / "per_seed.csv", index=False)
        table.to_csv(staging / "table.csv", index=False)
        heldout.to_csv(staging / "heldout.csv", index=False)
        (staging / "table.md").write_text(
            f"Base model validation accuracy: {base_accuracy:.3f}, test accuracy: {base_test_accuracy:.3f}; "
            f"target = `none`'s final validation accuracy (mean of its last {WINDOW} evaluations, mean over seeds) "
            f"= {per_seed['target'].iloc[0]:.3f}; steps to target use a {WINDOW}-point rolling mean. Plain-RL arms: "
            f"{', '.join(plain)}. A jump arm is an acceleration only if it beats the fastest of them "
            "(ratio_to_fastest_plain below 1 with its 95 % interval, test accuracy no lower). ICER = RL steps / test "
            "gain over the base in points.\n\n"
            + table.to_markdown(index=False, floatfmt=".3f") + "\n\nPer seed:\n\n"
            + per_seed.to_markdown(index=False, floatfmt=".3f") + "\n"
        )  # fmt: skip
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
        plot_curves(curves, base_accuracy, staging / "accuracy_vs_steps")
    metrics = {f"{row['arm']}_test_accuracy_mean": float(row["test_accuracy_mean"]) for row in table.to_dict("records")}
    return StageRecord(metrics=metrics, artifacts=[output])
