"""Does this checkout reproduce an earlier run bit for bit? Reruns round 0 of ``none`` for one seed with the current
code, in-process, on the experiment's own data and base model, and compares metrics.parquet (wall-clock seconds
aside), eval.parquet and the final adapter with the ones on disk.

Usage: python bench/bit_identity.py results/default [--seed 0]   (config/config.yaml must still describe that run)
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
from nextrl.stages import rl_chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = arm_config(load_config(Path("config/config.yaml")), "none")
    torch.set_num_threads(config["resources"]["train"]["cpus"])
    old = args.experiment / "none" / f"seed{args.seed}" / "round0" / "rl"
    with tempfile.TemporaryDirectory() as scratch:
        new = Path(scratch) / "rl"
        rl_chunk.run(config, start_model=args.experiment / "base", resume=None, jump_selection=None,
                     data=args.experiment / "data", output=new, seed=args.seed, round_index=0)  # fmt: skip
        same = {
            "metrics": pd.read_parquet(new / "metrics.parquet")
            .drop(columns="seconds")
            .equals(pd.read_parquet(old / "metrics.parquet").drop(columns="seconds")),
            "eval": pd.read_parquet(new / "eval.parquet").equals(pd.read_parquet(old / "eval.parquet")),
        }
        adapter = "state/adapter/adapter_model.safetensors"
        fresh, stored = load_file(new / adapter), load_file(old / adapter)
        same["adapter"] = fresh.keys() == stored.keys() and all(torch.equal(fresh[k], stored[k]) for k in stored)
    print(", ".join(f"{name} {'identical' if equal else 'DIFFERS'}" for name, equal in same.items()))


if __name__ == "__main__":
    main()
