"""The figure stage: one figure of :data:`nextrl.analysis.figures.FIGURES`, drawn from the summary table it names,
written
as ``<output>.png`` and ``<output>.pdf`` (each atomically). No model is loaded; a table with no rows (e.g. no jump
arm, so no α sweep) gives a figure that says so instead of an error."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.analysis.figures import FIGURES, plot_nothing
from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord


def run(config: Mapping[str, Any], *, name: str, summary: Path, output: Path) -> StageRecord:
    if name not in FIGURES:
        raise ValueError(f"figure {name!r}: unknown; the figures are {', '.join(FIGURES)}")
    table_name, plot = FIGURES[name]
    source = summary / table_name
    if not source.exists():
        raise FileNotFoundError(f"figure {name}: {source} does not exist (run the summary rule first)")
    table = pd.read_csv(source) if source.suffix == ".csv" else pd.read_parquet(source)
    png, pdf = output.with_suffix(".png"), output.with_suffix(".pdf")
    with atomic_path(png) as png_staging, atomic_path(pdf) as pdf_staging, tempfile.TemporaryDirectory() as scratch:
        stem = Path(scratch) / name
        if table.empty:
            plot_nothing(f"{name}: {table_name} has no rows in this experiment", stem)
        else:
            plot(table, stem)
        shutil.move(stem.with_suffix(".png"), png_staging)
        shutil.move(stem.with_suffix(".pdf"), pdf_staging)
    return StageRecord(params={"figure": name, "table": str(source)}, artifacts=[png, pdf])
