"""Search for a regime where a jump can pay off: plain RL's gain and the extrapolability probe per setting.

For one base setting (config/config.yaml plus ``--set key=value`` overrides), build the data and the base model once,
then run round 0 of plain RL for every (learning rate, seed) and probe its ray W_0 + k·(W_T − W_0), all in-process
through the stages' own ``run`` functions (no Snakemake, no per-job start-up). Appends one row per (lr, seed) to
``<out>/regime.csv`` and prints, per (setting, lr), the means over seeds the issue's targets are stated in:

* gain — validation accuracy at T minus the base's (target ≥ 0.20);
* last_quarter_gain — accuracy at T minus accuracy at 3T/4 (> 0: still gaining);
* k=… — the probe; ``k1.5_minus_k1`` ≥ 0 is the "can pay off" target.

Example (the default regime's lead from docs/method.md, "The extrapolability probe", three learning rates, three
seeds)::

    .venv/bin/python bench/regime.py --label sharp --set model.warm_start.off_by_one=0.5 \\
        --lrs 1e-4 3e-4 1e-3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

import nextrl  # noqa: F401  (offline environment)
from nextrl.config import load_config, validate_config
from nextrl.stages import base_model, data, probe, rl_chunk


def with_override(config: dict[str, Any], assignment: str) -> None:
    key, _, value = assignment.partition("=")
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    node[leaf] = yaml.safe_load(value)


def overridden_config(assignments: list[str]) -> dict[str, Any]:
    """config/config.yaml with ``key.path=value`` assignments applied, validated (schema defaults filled in)."""
    config = load_config(Path("config/config.yaml"))
    for assignment in assignments:
        with_override(config, assignment)
    validate_config(config)
    return config


def plain_run(config: dict[str, Any], directory: Path, lr: float, seed: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    config = copy.deepcopy(config)
    config["rl"]["lr"] = lr
    run_dir = directory / f"lr{lr:g}_seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "rl").exists():
        rl_chunk.run(config, start_model=directory / "base", resume=None, jump_selection=None,
                     data=directory / "data", output=run_dir / "rl", seed=seed, round_index=0)  # fmt: skip
    if not (run_dir / "probe.parquet").exists():
        probe.run(config, start_model=directory / "base", adapter=run_dir / "rl" / "state" / "adapter",
                  start_adapter=None, data=directory / "data", output=run_dir / "probe.parquet",
                  arm="none", seed=seed, round_index=0)  # fmt: skip
    curve = pd.read_parquet(run_dir / "rl" / "eval.parquet").set_index("step")["accuracy"]
    steps = config["rl"]["chunk_steps"]
    quarter = curve.index[curve.index <= 3 * steps // 4].max()
    rays = pd.read_parquet(run_dir / "probe.parquet").set_index("k")["accuracy"]
    row = {"lr": lr, "seed": seed, "base": curve.iloc[0], "final": curve.iloc[-1],
           "gain": curve.iloc[-1] - curve.iloc[0], "last_quarter_gain": curve.iloc[-1] - curve[quarter],
           "seconds": float(pd.read_parquet(run_dir / "rl" / "metrics.parquet")["seconds"].sum())}  # fmt: skip
    row |= {f"k={k:g}": accuracy for k, accuracy in rays.items()}
    row["k1.5_minus_k1"] = rays[1.5] - rays[1.0]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of this base setting (a directory under --out)")
    parser.add_argument("--set", action="append", default=[], help="config override key.path=value (YAML value)")
    parser.add_argument("--base-from", help="reuse the data and base model of this earlier label (same model/task)")
    parser.add_argument("--lrs", type=float, nargs="+", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/out/regime"))
    args = parser.parse_args()

    config = overridden_config(args.set)
    directory = args.out / args.label
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    torch.set_num_threads(
        config["resources"]["train"]["cpus"]
    )  # as the workflow builds it: the warm start depends on the thread count
    if args.base_from:
        for name in ("data", "base"):
            if not (directory / name).exists():
                (directory / name).symlink_to((args.out / args.base_from / name).resolve())
    if not (directory / "data").exists():
        data.run(config, output=directory / "data")
    if not (directory / "base").exists():
        base_model.run(config, data=directory / "data", output=directory / "base")
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(plain_run, config, directory, lr, seed) for lr in args.lrs for seed in args.seeds]
        rows = [future.result() for future in futures]
    table = pd.DataFrame(rows).assign(label=args.label, overrides=" ".join(args.set))
    results = args.out / "regime.csv"
    previous = pd.read_csv(results) if results.exists() else pd.DataFrame()
    pd.concat([previous, table], ignore_index=True).to_csv(results, index=False)
    means = table.drop(columns=["seed", "overrides"]).groupby(["label", "lr"]).mean()
    print(means.to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
