"""How much the warm-started base's accuracy depends on the model seed and the thread count, for one base setting.

A partly trained tiny model sits in a phase transition, so the same warm-start settings can end far apart when only
``model.seed`` or the thread count changes (README "Choosing the default regime"). For config/config.yaml plus
``--set key=value`` overrides, builds the base once per (model seed, thread count) through the base_model stage and
appends its greedy validation accuracy and final warm-start loss (mean of the last 50 steps) to
``<out>/base_lottery.csv``. Example, the default's base at model seeds 0–2 with 1 and 2 threads::

    .venv/bin/python bench/base_lottery.py --label default --model-seeds 0 1 2 --threads 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from regime import overridden_config

import nextrl  # noqa: F401  (offline environment)
from nextrl.models import load_model, load_tokenizer
from nextrl.rollouts.accuracy import evaluate_model
from nextrl.stages import base_model, data
from nextrl.tasks import make_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of this base setting (a directory under --out)")
    parser.add_argument("--set", action="append", default=[], help="config override key.path=value (YAML value)")
    parser.add_argument("--model-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--out", type=Path, default=Path("bench/out/base_lottery"))
    args = parser.parse_args()

    config = overridden_config(args.set)
    if not (args.out / "data").exists():
        data.run(config, output=args.out / "data")
    validation = pd.read_parquet(args.out / "data" / "validation.parquet")
    rows = []
    for model_seed in args.model_seeds:
        for threads in args.threads:
            torch.set_num_threads(threads)
            config["model"]["seed"] = model_seed
            base = args.out / args.label / f"seed{model_seed}_threads{threads}"
            if not base.exists():
                base_model.run(config, data=args.out / "data", output=base)
            rewards = evaluate_model(
                load_model(base), load_tokenizer(base), validation, make_scorer(config["task"]), config["eval"]
            )
            rows.append({
                "label": args.label, "model_seed": model_seed, "threads": threads,
                "validation_accuracy": rewards["reward"].mean(),
                "final_loss": pd.read_parquet(base / "warm_start.parquet")["loss"].tail(50).mean(),
                "overrides": " ".join(args.set),
            })  # fmt: skip
            print(rows[-1])
    results = args.out / "base_lottery.csv"
    previous = pd.read_csv(results) if results.exists() else pd.DataFrame()
    pd.concat([previous, pd.DataFrame(rows)], ignore_index=True).to_csv(results, index=False)


if __name__ == "__main__":
    main()
