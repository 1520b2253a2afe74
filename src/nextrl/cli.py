"""Command line of the stages: ``nextrl <stage> …``, what every Snakemake rule calls (one stage, one call).

The configuration arrives either as ``--config-json`` (what the rules pass: the validated config, without the
keys that only shape the DAG) or as ``--configfile`` (standalone use; validated here). Any failure prints one
line naming the key or file and exits non-zero; stages write atomically, so nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nextrl  # noqa: F401  (sets the offline / no-telemetry environment first)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from nextrl.config import load_config

    if args.configfile:
        return load_config(Path(args.configfile))
    return json.loads(args.config_json)


def _threads(config: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(config.get("threads", 1))


def cmd_data(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from nextrl.artifacts import atomic_path
    from nextrl.tasks import build_splits
    from nextrl.tracking import log_stage

    splits = build_splits(config["task"])
    with atomic_path(Path(args.output)) as staging:
        staging.mkdir()
        for name, frame in splits.items():
            frame.to_parquet(staging / f"{name}.parquet", index=False)
    log_stage(Path(args.experiment_dir), "data", {"arm": "shared"}, params={"task": config["task"]},
              metrics={f"{name}_items": len(frame) for name, frame in splits.items()})  # fmt: skip


def cmd_base_model(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from nextrl.base_model import build_base_model
    from nextrl.tracking import log_stage

    _threads(config)
    summary = build_base_model(config, Path(args.data), Path(args.output))
    log_stage(Path(args.experiment_dir), "base_model", {"arm": "shared"}, params={"model": config["model"]}, metrics=summary)


def cmd_rl_chunk(args: argparse.Namespace, config: dict[str, Any]) -> None:
    import pandas as pd

    from nextrl.rl_chunk import run_rl_chunk
    from nextrl.tracking import log_stage

    _threads(config)
    output = Path(args.output)
    run_rl_chunk(Path(args.start_model), Path(args.resume) if args.resume else None, Path(args.data), output,
                 config, seed=args.seed, round_index=args.round)  # fmt: skip
    metrics = pd.read_parquet(output / "metrics.parquet")
    evaluations = pd.read_parquet(output / "eval.parquet")
    step_metrics = metrics.merge(evaluations[["step", "accuracy"]].rename(columns={"accuracy": "val_accuracy"}), "left", "step")
    log_stage(Path(args.experiment_dir), "rl", {"arm": args.arm, "seed": args.seed, "round": args.round},
              params={"rl": config["rl"], "lora": config["lora"]}, step_metrics=step_metrics,
              artifacts=[output / "metrics.parquet", output / "eval.parquet"])  # fmt: skip


def cmd_evaluate(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from nextrl.final_eval import evaluate_final
    from nextrl.tracking import log_stage

    _threads(config)
    adapter = Path(args.adapter) if args.adapter else None
    accuracy = evaluate_final(Path(args.start_model), adapter, Path(args.data), args.split, config, Path(args.output))
    log_stage(Path(args.experiment_dir), "evaluate", {"arm": args.arm, "seed": args.seed, "round": args.round},
              metrics={f"{args.split}_accuracy": accuracy}, artifacts=[Path(args.output)])  # fmt: skip


def cmd_trajectory(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from nextrl.tracking import log_stage
    from nextrl.trajectory import extract_trajectory

    began = time.perf_counter()
    rows = extract_trajectory(Path(args.snapshots), Path(args.output), args.round, config["next"]["horizon"],
                              config["next"]["triplets"])  # fmt: skip
    log_stage(Path(args.experiment_dir), "trajectory", {"arm": args.arm, "seed": args.seed, "round": args.round},
              metrics={"rows": rows, "seconds": time.perf_counter() - began})  # fmt: skip


def cmd_fit(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from nextrl.fitting import fit_extrapolator
    from nextrl.tracking import log_stage

    _threads(config)
    options = {"seed": args.seed * 1000 + args.round, **config["next"].get("predictor", {})}
    log = fit_extrapolator(args.arm, options, Path(args.trajectory), Path(args.evaluations), Path(args.output))
    final = log.sort_values("epoch").groupby("group")["loss"].last() if len(log) else {}
    log_stage(Path(args.experiment_dir), "fit", {"arm": args.arm, "seed": args.seed, "round": args.round},
              params=options, metrics={f"final_loss_{group}": float(loss) for group, loss in dict(final).items()},
              artifacts=[Path(args.output) / "fit.parquet"])  # fmt: skip


def cmd_extrapolate(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from nextrl.extrapolate import write_candidates
    from nextrl.fitting import predict_deltas
    from nextrl.tracking import log_stage

    _threads(config)
    deltas = predict_deltas(Path(args.predictor), Path(args.trajectory))
    table = write_candidates(Path(args.adapter), deltas, config["next"]["alphas"], Path(args.output))
    log_stage(Path(args.experiment_dir), "extrapolate", {"arm": args.arm, "seed": args.seed, "round": args.round},
              metrics={"candidates": len(table), "max_delta_frob": float(table["delta_frob"].max())})  # fmt: skip


def cmd_select(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from nextrl.select import select_candidate
    from nextrl.tracking import log_stage

    _threads(config)
    scores = select_candidate(Path(args.start_model), Path(args.candidates), Path(args.data), config, Path(args.output))
    chosen = scores.loc[scores["selected"]].iloc[0]
    log_stage(Path(args.experiment_dir), "select", {"arm": args.arm, "seed": args.seed, "round": args.round},
              metrics={"selected_alpha": float(chosen["alpha"]), "selected_val_accuracy": float(chosen["accuracy"])},
              artifacts=[Path(args.output) / "selection.parquet"])  # fmt: skip


def cmd_summary(args: argparse.Namespace, config: dict[str, Any]) -> None:
    from nextrl.summary import write_summary
    from nextrl.tracking import log_stage

    table = write_summary(Path(args.experiment_dir), config, Path(args.output))
    log_stage(Path(args.experiment_dir), "summary", {"arm": "all"}, artifacts=[Path(args.output)],
              metrics={f"{row['arm']}_test_accuracy_mean": float(row["test_accuracy_mean"]) for row in table.to_dict("records")})  # fmt: skip


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, dict[str, Any]], None], list[str]]] = {
    "data": (cmd_data, ["output"]),
    "base-model": (cmd_base_model, ["data", "output"]),
    "rl-chunk": (cmd_rl_chunk, ["start_model", "resume", "data", "output", "arm", "seed", "round"]),
    "evaluate": (cmd_evaluate, ["start_model", "adapter", "data", "split", "output", "arm", "seed", "round"]),
    "trajectory": (cmd_trajectory, ["snapshots", "output", "arm", "seed", "round"]),
    "fit": (cmd_fit, ["trajectory", "evaluations", "output", "arm", "seed", "round"]),
    "extrapolate": (cmd_extrapolate, ["predictor", "trajectory", "adapter", "output", "arm", "seed", "round"]),
    "select": (cmd_select, ["start_model", "candidates", "data", "output", "arm", "seed", "round"]),
    "summary": (cmd_summary, ["output"]),
}
_INTEGER_OPTIONS = {"seed", "round"}
_OPTIONAL_OPTIONS = {"resume", "adapter"}  # empty: fresh LoRA / the start model alone


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nextrl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, options) in COMMANDS.items():
        command = commands.add_parser(name)
        source = command.add_mutually_exclusive_group(required=True)
        source.add_argument("--config-json", help="validated config as JSON (what the rules pass)")
        source.add_argument("--configfile", help="YAML config file, validated against the schema")
        command.add_argument("--experiment-dir", required=True, help="results/<experiment> (MLflow store lives there)")
        for option in options:
            flag = "--" + option.replace("_", "-")
            if option in _INTEGER_OPTIONS:
                command.add_argument(flag, type=int, required=True)
            else:
                command.add_argument(flag, required=option not in _OPTIONAL_OPTIONS, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
        COMMANDS[args.command][0](args, config)
    except (ValueError, RuntimeError, FileNotFoundError, KeyError) as error:
        print(f"nextrl {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
