"""The layout of an RL chunk's output directory (``…/round<r>/rl``), the one owner of its file names::

    snapshots/step_<t>/         the adapter (PEFT, fp32) or the dense weights (full mode) after RL step t
    state/adapter/              the LoRA adapter at the chunk's end (LoRA mode), what the next round continues
    state/model/                the whole model at the chunk's end (full mode), a HF model directory
    state/training_state.pt     AdamW state, torch RNG state, data cursor and global step (exact resume)
    metrics.parquet             one row per RL step
    eval.parquet                validation accuracy at every snapshot (and at the start, when evaluated)

The RL chunk and the import of a foreign run write it; every later stage and the summary read it. Schemas:
docs/artifacts.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SNAPSHOT = re.compile(r"^step_(\d+)$")
METRIC_COLUMNS = (
    "step", "reward_mean", "reward_std", "accuracy", "loss", "kl", "clip_fraction", "entropy",
    "response_len", "grad_norm", "lr", "tokens", "generation_seconds", "scoring_seconds", "update_seconds", "seconds",
)  # fmt: skip
"""metrics.parquet: one row per RL step (with vLLM rollouts also :data:`nextrl.rl.importance.IS_COLUMNS`)."""
TIMING_COLUMNS = ("generation_seconds", "scoring_seconds", "update_seconds", "seconds")
"""The wall-clock columns of metrics.parquet: the only ones a rerun of the same chunk does not reproduce."""
EVAL_COLUMNS = ("step", "split", "accuracy", "n_items")
"""eval.parquet: one row per evaluated step."""


class ChunkLayoutError(ValueError):
    """A chunk's output directory that lacks what its layout promises; the message names the directory."""


def snapshot_path(snapshots: Path, step: int) -> Path:
    """The snapshot of RL step ``step`` in a snapshots directory."""
    return snapshots / f"step_{step}"


def snapshot_steps(snapshots: Path) -> list[int]:
    """The RL steps t of the ``step_<t>/`` snapshots in ``snapshots``, ascending."""
    if not snapshots.is_dir():
        raise ChunkLayoutError(f"{snapshots}: no such snapshot directory")
    steps = sorted(int(match[1]) for path in snapshots.iterdir() if (match := _SNAPSHOT.match(path.name)))
    if not steps:
        raise ChunkLayoutError(f"{snapshots} holds no step_<t> snapshots")
    return steps


@dataclass(frozen=True)
class ChunkLayout:
    """The paths of one RL chunk's output directory ``root``."""

    root: Path

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def snapshot(self, step: int) -> Path:
        return snapshot_path(self.snapshots, step)

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def adapter(self) -> Path:
        """The adapter at the chunk's end (LoRA mode)."""
        return self.state / "adapter"

    @property
    def model(self) -> Path:
        """The whole model at the chunk's end (full mode)."""
        return self.state / "model"

    @property
    def training_state(self) -> Path:
        """AdamW state, torch RNG state, data cursor and global step."""
        return self.state / "training_state.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.parquet"

    @property
    def evaluations(self) -> Path:
        return self.root / "eval.parquet"
