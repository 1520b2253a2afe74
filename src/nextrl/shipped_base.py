"""Bases that ship with nextrl (``model.source: shipped``, ``model.name``): the embedded default's warm-started model,
built once by nextrl's own warm start and stored in the package with a SHA-256 of every file, so that every machine
starts RL from identical weights. The warm start itself is not bit-reproducible across CPUs or thread counts (the
same commit gave validation accuracy 0.299 on one machine and 0.214 on another); shipping its result is.

A shipped base is ``nextrl/bases/<name>/``: a standard HF model directory (config, safetensors, tokenizer,
``warm_start.parquet``) and :data:`MANIFEST`, a JSON file with ``sha256`` (file → digest), ``recipe`` (the validated
experiment config that built and scored it, ``model.source: tiny``, defaults filled in) and ``validation_accuracy``
(greedy, on the recipe's validation split, measured when it was built).

``python -m nextrl.shipped_base rebuild default`` runs the recipe's warm start again and says whether the rebuild
matches the shipped weights; ``python -m nextrl.shipped_base ship default --from results/default`` stores a base
built by the workflow (its ``base/`` and ``data/``) as the shipped one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

BASES = Path(__file__).parent / "bases"
MANIFEST = "base.json"
WEIGHTS = "model.safetensors"


class ShippedBaseError(ValueError):
    """A shipped base that is missing or whose files do not match their recorded digests; the message names the key
    or the file."""


def shipped_base_dir(name: str) -> Path:
    directory = BASES / name
    if not (directory / MANIFEST).is_file():
        known = sorted(path.name for path in BASES.iterdir() if (path / MANIFEST).is_file())
        raise ShippedBaseError(f"model.name: {name!r} is not a shipped base (shipped: {', '.join(known)})")
    return directory


def file_digests(directory: Path) -> dict[str, str]:
    """SHA-256 of every file of a model directory but the manifest, by file name."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST
    }


def manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / MANIFEST).read_text())


def verify(directory: Path) -> dict[str, Any]:
    """The manifest of the shipped base in ``directory``, after checking every file against its digest."""
    record = manifest(directory)
    recorded, found = record["sha256"], file_digests(directory)
    for name in sorted(set(recorded) | set(found)):
        if recorded.get(name) != found.get(name):
            state = "missing" if name not in found else "not recorded" if name not in recorded else "changed"
            raise ShippedBaseError(f"model.name: the shipped base's file {directory / name} is {state}")
    return record


def copy_shipped_base(name: str, output: Path) -> dict[str, Any]:
    """Verify the shipped base ``name`` and copy it to ``output``; returns its manifest."""
    source = shipped_base_dir(name)
    recorded = verify(source)
    shutil.copytree(source, output)
    return recorded


def recipe(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The config that built a shipped base (its manifest's ``recipe``), validated again: keys the schema gained since
    take their defaults, which leave the warm start and the scoring as they were."""
    from nextrl.config import validate_config

    return validate_config(json.loads(json.dumps(recorded["recipe"])))


def validation_accuracy(model_dir: Path, data: Path, config: Mapping[str, Any]) -> float:
    """Greedy accuracy of ``model_dir`` on the validation split in ``data`` (``config``'s task and eval settings)."""
    from nextrl.models import load_model, load_tokenizer
    from nextrl.rollouts.accuracy import evaluate_model
    from nextrl.tasks import make_scorer

    items = pd.read_parquet(data / "validation.parquet")
    model = load_model(model_dir).eval()
    scored = evaluate_model(model, load_tokenizer(model_dir), items, make_scorer(config["task"]), config["eval"])
    return float(scored["reward"].mean())


def ship(name: str, built: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    """Store the workflow's base ``built/base`` (built by the validated experiment ``config``, with its data in
    ``built/data``) as the shipped base ``name``; returns the manifest written."""
    target = BASES / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(built / "base", target, ignore=shutil.ignore_patterns(".*"))  # not .snakemake_timestamp
    record = {"sha256": file_digests(target), "recipe": dict(config),
              "validation_accuracy": validation_accuracy(target, built / "data", config)}  # fmt: skip
    (target / MANIFEST).write_text(json.dumps(record, indent=1) + "\n")
    return record


def rebuild(name: str, workdir: Path) -> dict[str, Any]:
    """Run the recipe of the shipped base ``name`` again in ``workdir`` and compare: whether the weights are
    bit-identical, the largest absolute weight difference and both validation accuracies."""
    from safetensors.torch import load_file

    from nextrl.tasks import build_splits, write_splits
    from nextrl.warm_start import build_tiny_base

    shipped = shipped_base_dir(name)
    recorded = verify(shipped)
    config = recipe(recorded)
    (workdir / "data").mkdir()
    write_splits(build_splits(config["task"]), workdir / "data")
    (workdir / "base").mkdir()
    build_tiny_base(config, pd.read_parquet(workdir / "data" / "train.parquet"), workdir / "base")
    ours, theirs = load_file(shipped / WEIGHTS), load_file(workdir / "base" / WEIGHTS)
    difference = max(float((ours[key] - theirs[key]).abs().max()) for key in ours)
    return {
        "bit_identical": file_digests(workdir / "base")[WEIGHTS] == recorded["sha256"][WEIGHTS],
        "max_abs_weight_difference": difference,
        "shipped_validation_accuracy": recorded["validation_accuracy"],
        "rebuilt_validation_accuracy": validation_accuracy(workdir / "base", workdir / "data", config),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nextrl.shipped_base", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    again = commands.add_parser("rebuild", help="run the shipped base's recipe again and compare")
    again.add_argument("name")
    store = commands.add_parser("ship", help="store a workflow-built base (results/<experiment>) as a shipped base")
    store.add_argument("name")
    store.add_argument("--from", dest="built", type=Path, required=True, help="results/<experiment> with base/, data/")
    store.add_argument("--config", type=Path, required=True, help="the experiment config that built it")
    args = parser.parse_args(argv)
    if args.command == "ship":
        from nextrl.config import load_config

        config = load_config(args.config)
        record = ship(args.name, args.built, config)
        print(f"shipped {args.name}: {WEIGHTS} sha256 {record['sha256'][WEIGHTS]}, validation accuracy "
              f"{record['validation_accuracy']:.4f}")  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory(prefix="rebuild_base.") as workdir:
        report = rebuild(args.name, Path(workdir))
    verdict = "matches the shipped base bit for bit" if report["bit_identical"] else "differs from the shipped base"
    accuracies = f"{report['rebuilt_validation_accuracy']:.4f} (shipped {report['shipped_validation_accuracy']:.4f})"
    print(
        f"the rebuild {verdict}: max |Δw| {report['max_abs_weight_difference']:.3g}, validation accuracy {accuracies}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
