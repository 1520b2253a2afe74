"""Benchmark: what each stage job imports before it computes, with ``python -X importtime``.

Per stage, a fresh interpreter imports what ``nextrl <stage>`` imports (the CLI, the config loader, the device lease,
tracking and the stage's module) and the script reads the import-time log: the cumulative seconds of the whole import
and of each heavy library that got loaded (torch, transformers, peft, mlflow, pandas, matplotlib, reasoning_gym). Not a
test: it times, it asserts nothing. Run ``.venv/bin/python bench/stage_imports.py [--repeats 3] [--out bench/out]``;
it writes ``<out>/stage_imports.csv`` and prints the table (median over the repeats).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

from nextrl.cli import STAGES

HEAVY = ("torch", "transformers", "peft", "mlflow", "pandas", "matplotlib", "reasoning_gym")
LINE = re.compile(r"^import time:\s+(?P<self>\d+) \|\s+(?P<cumulative>\d+) \|(?P<indent>\s*)(?P<name>\S+)$")


def import_seconds(stage: str) -> dict[str, float]:
    """Cumulative import seconds of the stage job's imports, and of each heavy library it loads (top-level only)."""
    code = f"import nextrl.cli, nextrl.config, nextrl.jobs.device_lease, nextrl.jobs.tracking, nextrl.stages.{stage}"
    log = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    seconds = dict.fromkeys(("total", *HEAVY), 0.0)
    for line in log.stderr.splitlines():
        match = LINE.match(line)
        if not match:
            continue
        cumulative = int(match["cumulative"]) / 1e6
        if len(match["indent"]) == 1:  # a module the code imported itself: the parts add up to the total
            seconds["total"] += cumulative
        if match["name"] in HEAVY:
            seconds[match["name"]] = max(seconds[match["name"]], cumulative)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    args = parser.parse_args()
    rows = []
    for stage in STAGES:
        runs = [import_seconds(stage) for _ in range(args.repeats)]
        rows.append({"stage": stage} | {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]})
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "stage_imports.csv", index=False)
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
