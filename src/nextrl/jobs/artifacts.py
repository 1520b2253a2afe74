"""Atomic artifacts: everything a stage writes is complete or absent.

Files and directories are written under a temporary sibling name in the same directory and moved into place
with one ``os.replace`` / ``rename`` (atomic on POSIX within a filesystem); on any error the temporary is
removed, so a killed or failed stage never leaves a partial artifact at the final path. A stage killed with
SIGKILL cannot clean up; the next writer of the same path removes such stale temporaries first (one job owns an
output at a time, as Snakemake guarantees).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success move it to ``final`` (file or directory)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    target = temporary / final.name
    try:
        yield target
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(target, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as temporary:
        frame.to_parquet(temporary, index=False)


def write_json(payload: Any, path: Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(payload, indent=1))
