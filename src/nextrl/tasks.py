"""Tasks with verifiable rewards: building train / validation / test splits and scoring completions.

Two task sources:

* ``reasoning_gym`` — a procedural reasoning-gym dataset (e.g. ``chain_sum``), scored with reasoning-gym's own
  ``score_answer`` on the extracted answer. Each split is generated from its own seed; the seeds must be far apart
  because item i of seed s equals item i−1 of seed s+1, and every split is de-duplicated by prompt and against the
  splits before it, so no prompt appears in two splits.
* ``local_file`` — a jsonl or Parquet file with a question and an answer column (GSM8K / MATH style), split by a
  seeded permutation after de-duplication, scored with math-verify (``verify(gold, parse(completion))``).

Split table schema (one Parquet per split): ``index`` int64, ``prompt`` str (what the model sees),
``answer`` str (gold), ``entry`` str (JSON of the source item, what the scorer needs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "validation", "test")
SPLIT_COLUMNS = ("index", "prompt", "answer", "entry")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

Scorer = Callable[[str, str], float]
"""(completion text, entry JSON) → reward in [0, 1]."""


class TaskError(ValueError):
    """A task configuration or task file that cannot be used; the message names the key or file."""


def build_splits(task: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """All three splits of the configured task, disjoint by prompt, each non-empty."""
    source = task["source"]
    if source == "reasoning_gym":
        splits = _reasoning_gym_splits(task)
    elif source == "local_file":
        splits = _local_file_splits(task)
    else:
        raise TaskError(f"task.source: unknown task source {source!r}; expected 'reasoning_gym' or 'local_file'")
    for name, frame in splits.items():
        if frame.empty:
            raise TaskError(f"task: the {name} split is empty after de-duplication (check task.sizes / the task file)")
    return splits


def extract_answer(completion: str) -> str:
    """The answer inside ``<answer>…</answer>`` if present, else the whole completion, stripped."""
    tagged = _ANSWER_TAG.search(completion)
    return (tagged.group(1) if tagged else completion).strip()


def make_scorer(task: Mapping[str, Any]) -> Scorer:
    """The verifier of the configured task: completion text and the item's entry JSON → reward."""
    if task["source"] == "reasoning_gym":
        import reasoning_gym

        try:
            score_answer = reasoning_gym.get_score_answer_fn(task["dataset"])
        except Exception as error:  # reasoning-gym raises several types for an unknown name
            raise TaskError(f"task.dataset: unknown reasoning-gym dataset {task['dataset']!r}") from error

        def score_reasoning_gym(completion: str, entry: str) -> float:
            return float(score_answer(extract_answer(completion), json.loads(entry)))

        return score_reasoning_gym

    from math_verify import parse, verify

    def score_math(completion: str, entry: str) -> float:
        gold = json.loads(entry)["answer"]
        gold_latex = gold if "$" in gold else f"${gold}$"
        return float(
            verify(parse(gold_latex, parsing_timeout=None), parse(completion, parsing_timeout=None), timeout_seconds=None)
        )

    return score_math


def _reasoning_gym_splits(task: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    import reasoning_gym

    seen: set[str] = set()
    splits = {}
    for split in SPLITS:
        try:
            dataset = reasoning_gym.create_dataset(
                task["dataset"], seed=task["split_seeds"][split], size=task["sizes"][split], **task.get("params", {})
            )
        except Exception as error:
            raise TaskError(
                f"task.dataset / task.params: reasoning-gym could not build {task['dataset']!r} "
                f"with params {dict(task.get('params', {}))}: {error}"
            ) from error
        rows = []
        for item in dataset:
            prompt = _format_prompt(task["prompt_template"], item)
            if prompt in seen:
                continue
            seen.add(prompt)
            rows.append({"prompt": prompt, "answer": str(item["answer"]), "entry": json.dumps(item, default=str)})
        splits[split] = _split_frame(rows)
    return splits


def _local_file_splits(task: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    path = Path(task["path"])
    if not path.is_file():
        raise TaskError(f"task.path: task file {path} does not exist")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
    for key in ("question_column", "answer_column"):
        column = task[key]
        if column not in frame.columns:
            raise TaskError(f"task.{key}: column {column!r} is missing from {path} (columns: {list(frame.columns)})")
    frame = frame.drop_duplicates(subset=task["question_column"]).reset_index(drop=True)
    order = np.random.default_rng(task["split_seed"]).permutation(len(frame))
    n_validation = int(round(task["fractions"]["validation"] * len(frame)))
    n_test = int(round(task["fractions"]["test"] * len(frame)))
    bounds = {
        "validation": order[:n_validation],
        "test": order[n_validation : n_validation + n_test],
        "train": order[n_validation + n_test :],
    }
    splits = {}
    for split in SPLITS:
        rows = []
        for row in frame.iloc[np.sort(bounds[split])].to_dict("records"):
            item = {"question": str(row[task["question_column"]]), "answer": str(row[task["answer_column"]])}
            rows.append(
                {"prompt": _format_prompt(task["prompt_template"], item), "answer": item["answer"], "entry": json.dumps(item)}
            )
        splits[split] = _split_frame(rows)
    return splits


def _format_prompt(template: str, item: Mapping[str, Any]) -> str:
    try:
        return template.format(**item)
    except (KeyError, IndexError) as error:
        raise TaskError(f"task.prompt_template: {template!r} names a field the task items lack: {error}") from error


def _split_frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["prompt", "answer", "entry"])
    frame.insert(0, "index", np.arange(len(frame), dtype=np.int64))
    return frame
