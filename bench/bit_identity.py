"""Does this checkout reproduce an earlier run bit for bit? Reruns round 0 of ``none`` for one seed with the current
code, in-process, on the experiment's own data and base model, and compares metrics.parquet (wall-clock columns
aside), eval.parquet and the final adapter with the ones on disk; where they differ, the first RL step whose metrics
differ and the final validation accuracies. ``--threads`` reruns with another torch thread count than the run's
(``resources.train.cpus``): what a differently-threaded machine would compute.

Usage: python bench/bit_identity.py results/default [--seed 0] [--threads 2]   (config/config.yaml must still
describe that run)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

import nextrl  # noqa: F401  (offline environment)
from nextrl.config import load_config
from nextrl.experiment import arm_config
from nextrl.rl.chunk_layout import TIMING_COLUMNS
from nextrl.stages import rl_chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: resources.train.cpus)")
    args = parser.parse_args()
    config = arm_config(load_config(Path("config/config.yaml")), "none")
    torch.set_num_threads(args.threads or config["resources"]["train"]["cpus"])
    old = args.experiment / "none" / f"seed{args.seed}" / "round0" / "rl"
    with tempfile.TemporaryDirectory() as scratch:
        new = Path(scratch) / "rl"
        rl_chunk.run(config, start_model=args.experiment / "base", resume=None, jump_selection=None,
                     data=args.experiment / "data", output=new, seed=args.seed, round_index=0)  # fmt: skip
        metrics = [pd.read_parquet(run / "metrics.parquet").drop(columns=list(TIMING_COLUMNS)) for run in (new, old)]
        evaluations = [pd.read_parquet(run / "eval.parquet") for run in (new, old)]
        same = {"metrics": metrics[0].equals(metrics[1]), "eval": evaluations[0].equals(evaluations[1])}
        differing = metrics[0].ne(metrics[1]).any(axis=1)
        first = int(metrics[0].loc[differing, "step"].min()) if differing.any() else None
        adapter = "state/adapter/adapter_model.safetensors"
        fresh, stored = load_file(new / adapter), load_file(old / adapter)
        same["adapter"] = fresh.keys() == stored.keys() and all(torch.equal(fresh[k], stored[k]) for k in stored)
    print(", ".join(f"{name} {'identical' if equal else 'DIFFERS'}" for name, equal in same.items()))
    if first is not None:
        finals = [float(table["accuracy"].iloc[-1]) for table in evaluations]
        print(f"first differing RL step: {first}; final validation accuracy {finals[0]:.4f} here vs {finals[1]:.4f}")


if __name__ == "__main__":
    main()
