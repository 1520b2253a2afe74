"""The main tables of several experiments side by side: e.g. GRPO vs RLOO vs REINFORCE++ under the same arms (the
paper's "other RL algorithms" ablation, docs/method.md, "Rival extrapolators"; config/rloo.yaml,
config/reinforce_pp.yaml), or LoRA
vs full-parameter RL (its "without LoRA" ablation; config/full.yaml)::

    python -m nextrl.analysis.cross_experiment results/default results/default_rloo results/default_reinforce_pp \\
        --output results/algorithms

Reads each experiment's ``summary/table.csv`` and ``summary/config.json`` (the summary stage writes both) and writes
``experiments.{md,csv,tex}`` to ``--output``: one row per (experiment, arm), with the experiment's advantage
estimator and training mode (``rl.mode``: lora | full) beside the main table's columns. The experiment-level
training mode is the jump arms' (a plain-RL variant may train otherwise; the experiment's ablation table says so).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from nextrl.jobs.artifacts import atomic_path

COLUMNS = ("experiment", "advantage", "training", "arm", "seeds", "steps_saved_mean", "steps_saved_ci95",
           "steps_saved_fastest_mean", "steps_saved_fastest_ci95", "steps_to_target_mean", "ratio_to_none_mean",
           "ratio_to_none_ci95", "test_accuracy_mean", "test_accuracy_ci95", "icer")  # fmt: skip


def across_experiments(results: Sequence[Path]) -> pd.DataFrame:
    """The main table of each ``results/<experiment>`` directory, tagged with its experiment and advantage."""
    frames = []
    for directory in results:
        summary = Path(directory) / "summary"
        for name in ("table.csv", "config.json"):
            if not (summary / name).is_file():
                raise FileNotFoundError(f"{summary / name} does not exist: run that experiment's summary first")
        config = json.loads((summary / "config.json").read_text())
        table = pd.read_csv(summary / "table.csv")
        tags = {"experiment": config["experiment"], "advantage": config["rl"]["advantage"]}
        frames.append(table.assign(**tags, training=config["rl"].get("mode", "lora")))
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nextrl.analysis.cross_experiment", description=__doc__.splitlines()[0]
    )
    parser.add_argument("results", type=Path, nargs="+", help="results/<experiment> directories")
    parser.add_argument("--output", type=Path, required=True, help="directory for experiments.{md,csv,tex}")
    args = parser.parse_args(argv)
    try:
        table = across_experiments(args.results)
    except (FileNotFoundError, KeyError) as error:
        print(f"nextrl experiments: error: {error}", file=sys.stderr)
        return 1
    with atomic_path(args.output) as staging:
        staging.mkdir()
        table.to_csv(staging / "experiments.csv", index=False)
        table.to_latex(staging / "experiments.tex", index=False, float_format="%.3f", na_rep="--")
        (staging / "experiments.md").write_text(table.to_markdown(index=False, floatfmt=".3f") + "\n")
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
