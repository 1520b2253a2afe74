"""Command line of the stages: ``nextrl <stage> …``, what every Snakemake rule calls (one rule, one call).

It only parses: the configuration arrives as ``--config-json`` (what the rules pass: the validated config without
the keys that only shape the DAG) or ``--configfile`` (standalone use; validated here), every path as an option;
then it calls ``nextrl.stages.<stage>.run`` and queues what that returns for MLflow (:mod:`nextrl.jobs.tracking`). Any
failure prints one line naming the key or file and exits non-zero; stages write atomically, so nothing partial is
left behind — also on SIGTERM or SIGINT, which end a stage by an exception (:func:`stop_on_signals`).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nextrl  # noqa: F401  (sets the offline / no-telemetry environment first)


def optional_path(value: str) -> Path | None:
    """An empty string means "none" (e.g. no resume state in round 0)."""
    return Path(value) if value else None


# Per stage: its options (dest → type); every stage also takes --output, --experiment-dir and the config.
STAGES: dict[str, dict[str, Callable[[str], Any]]] = {
    "data": {"tokenizer": optional_path},
    "base_model": {"data": optional_path},
    "rl_chunk": {"start_model": Path, "resume": optional_path, "jump_selection": optional_path, "data": Path},
    "trajectory": {
        "snapshots": Path,
        "start_adapter": optional_path,
        "offset": optional_path,
        "base_model": optional_path,
        "start_weights": optional_path,
    },  # fmt: skip
    "fit": {"method": str, "trajectory": Path, "evaluations": Path},
    "extrapolate": {"predictor": Path, "trajectory": Path, "adapter": optional_path},
    "select": {
        "start_model": Path,
        "start_offset": optional_path,
        "adapter": optional_path,
        "candidates": Path,
        "data": Path,
    },  # fmt: skip
    "heldout": {
        "snapshots": Path,
        "start_adapter": optional_path,
        "offset": optional_path,
        "evaluations": Path,
        "base_model": optional_path,
        "start_weights": optional_path,
    },  # fmt: skip
    "probe": {"start_model": Path, "adapter": Path, "start_adapter": optional_path, "data": Path},
    "evaluate": {"start_model": Path, "adapter": optional_path, "data": Path, "split": str},
    "import_run": {"run_dir": Path, "base_model": Path, "accuracy": optional_path},
    "merge": {"base_model": Path, "candidates": Path},
    "summary": {"manifest": Path},
    "figure": {"name": str, "summary": Path},
}
RUN_TAGS = {"arm": str, "seed": int, "round_index": int}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nextrl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="stage", required=True)
    for stage, options in STAGES.items():
        command = commands.add_parser(stage)
        source = command.add_mutually_exclusive_group(required=True)
        source.add_argument("--config-json", help="validated config as JSON (what the rules pass)")
        source.add_argument("--configfile", help="YAML config file, validated against the schema")
        command.add_argument("--experiment-dir", type=Path, required=True, help="results/<experiment> (MLflow store)")
        command.add_argument("--output", type=Path, required=True)
        for dest, kind in (options | RUN_TAGS).items():
            flag = "--round" if dest == "round_index" else "--" + dest.replace("_", "-")
            optional = kind is optional_path or dest in RUN_TAGS
            default = "" if kind is optional_path else None  # argparse passes a string default through `type`
            command.add_argument(flag, dest=dest, type=kind, required=not optional, default=default)
        command.add_argument("--gpus", type=int, default=0, help="GPUs the job leases (nextrl.jobs.device_lease)")
        command.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the job's cpus)")
    return parser


def stop_on_signals() -> None:
    """SIGINT (Ctrl-C) and SIGTERM (scancel, a cancelled Snakemake job) end a stage by an exception, so every
    ``atomic_path`` removes its staging directory on the way out. Both handlers are installed here, whatever the
    process inherited: a job started from a non-interactive background shell (``nohup … &``) inherits SIGINT as
    ignored, and Python then installs no KeyboardInterrupt handler of its own. Exit status: 128 + 15 on SIGTERM; on
    SIGINT, Python's own for an uncaught KeyboardInterrupt (killed by SIGINT)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    stop_on_signals()
    args = build_parser().parse_args(argv)
    stage = args.stage
    try:
        from nextrl.config import load_config
        from nextrl.jobs.device_lease import lease_for_job
        from nextrl.jobs.tracking import queue_record

        config = load_config(Path(args.configfile)) if args.configfile else json.loads(args.config_json)
        lease = lease_for_job(args.gpus, os.environ)  # before the stage imports torch; held until the process ends
        run = importlib.import_module(f"nextrl.stages.{stage}").run
        if "torch" in sys.modules:  # the stages that compute with torch; summary and figures never import it
            sys.modules["torch"].set_num_threads(args.threads)
        values, started = vars(args), time.time()
        record = run(config, **{name: values[name] for name in inspect.signature(run).parameters if name != "config"})
        tags = {"round" if key == "round_index" else key: values[key] for key in RUN_TAGS if values[key] is not None}
        queue_record(args.experiment_dir, stage, tags or {"arm": "shared"}, record, started)
        if lease is not None:
            lease.release()
    except (ValueError, RuntimeError, FileNotFoundError, KeyError) as error:  # LeaseError is a RuntimeError
        print(f"nextrl {args.stage}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
