"""Tasks with verifiable rewards: building train / validation / test splits and scoring completions.

Two task sources:

* ``reasoning_gym`` — a procedural reasoning-gym dataset (e.g. ``chain_sum``), scored with reasoning-gym's own
  ``score_answer`` on the extracted answer. Each split is generated from its own seed; the seeds must be far apart
  because item i of seed s equals item i−1 of seed s+1 (:func:`check_split_seeds` refuses seeds closer than the
  split sizes), and every split is de-duplicated by prompt and against the splits before it, so no prompt appears
  in two splits. ``task.params`` are checked against the dataset's config dataclass before anything runs
  (:func:`check_task_params`).
* ``local_file`` — a jsonl or Parquet file with a question and an answer column (GSM8K / MATH style), split by a
  seeded permutation after de-duplication, scored with math-verify (``verify(gold, parse(completion))``).

Split table schema (one Parquet per split): ``index`` int64, ``prompt`` str (what the model sees),
``answer`` str (gold), ``entry`` str (JSON of the source item, what the scorer needs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextrl.type_hints import matches_type

SPLITS = ("train", "selection", "validation", "test")
"""selection chooses α (the only split select reads); validation draws the curves and steps-to-target; test is
touched once per final model. Built in this order, each de-duplicated against the ones before it."""
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_NUMBER = re.compile(r"[-−]?\d[\d,]*(?:\.\d+)?")

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
    check_disjoint(splits, "task")
    return splits


def write_splits(splits: Mapping[str, pd.DataFrame], directory: Path) -> None:
    """``<split>.parquet`` in ``directory`` (which must exist) for every split: the data stage's artifact layout."""
    for name, frame in splits.items():
        frame.to_parquet(directory / f"{name}.parquet", index=False)


def check_task_params(dataset: str, params: Mapping[str, Any]) -> None:
    """Refuse ``task.params`` the reasoning-gym dataset's config dataclass would not take, naming the key.

    Unknown keys, ``seed``/``size`` (set by ``task.split_seeds``/``task.sizes``) and values of the wrong type
    (a string or bool where the field is a number, …) are errors; then the config's own ``validate()`` runs.
    """
    import dataclasses
    import typing

    import reasoning_gym.factory

    if dataset not in reasoning_gym.factory.DATASETS:
        raise TaskError(f"task.dataset: unknown reasoning-gym task {dataset!r}")
    config_class = reasoning_gym.factory.DATASETS[dataset][1]
    hints = typing.get_type_hints(config_class)
    fields = {field.name for field in dataclasses.fields(config_class)} - {"seed", "size"}
    for key, value in params.items():
        if key not in fields:
            raise TaskError(f"task.params.{key}: not a parameter of {dataset!r} (known: {sorted(fields)})")
        if not matches_type(value, hints[key]):
            raise TaskError(f"task.params.{key}: {value!r} is not of type {hints[key]} ({dataset!r})")
    try:
        config_class(**params).validate()
    except (AssertionError, ValueError, TypeError) as error:
        raise TaskError(f"task.params: reasoning-gym refuses {dict(params)} for {dataset!r}: {error}") from error


def check_split_seeds(split_seeds: Mapping[str, int], sizes: Mapping[str, int]) -> None:
    """Refuse split seeds closer than the splits' sizes: item i of seed s equals item i−1 of seed s+1, so such
    splits would overlap (and lose most of their items to de-duplication)."""
    for position, first in enumerate(SPLITS):
        for second in SPLITS[position + 1 :]:
            gap = abs(split_seeds[first] - split_seeds[second])
            if gap < max(sizes[first], sizes[second]):
                raise TaskError(
                    f"task.split_seeds.{second}: {split_seeds[second]} is within {gap} of task.split_seeds.{first} "
                    f"({split_seeds[first]}), closer than the split sizes: the {second} split would overlap {first}"
                )


def check_disjoint(splits: Mapping[str, pd.DataFrame], where: str) -> None:
    """No prompt in two splits (the selection split must not overlap validation or test)."""
    for position, first in enumerate(SPLITS):
        for second in SPLITS[position + 1 :]:
            shared = set(splits[first]["prompt"]) & set(splits[second]["prompt"])
            if shared:
                raise TaskError(
                    f"{where}: the {second} split overlaps {first} ({len(shared)} prompts, e.g. {sorted(shared)[0]!r})"
                )


def extract_answer(completion: str, extraction: str = "completion") -> str:
    """The answer inside ``<answer>…</answer>`` if present, else the whole completion (``completion``) or its last
    number (``last_number``: a chat model that writes "7 + 7 = 14" or "The sum is 14." answers 14; thousands commas
    and a Unicode minus are normalised, a completion without a number is kept whole), stripped."""
    tagged = _ANSWER_TAG.search(completion)
    if tagged:
        return tagged.group(1).strip()
    numbers = _NUMBER.findall(completion) if extraction == "last_number" else []
    if numbers:
        return numbers[-1].replace(",", "").replace("−", "-")
    return completion.strip()


def render_chat(prompts: Sequence[str], tokenizer: Any, system_prompt: str | None) -> list[str]:
    """Each prompt as the user's message through ``tokenizer``'s chat template, with the generation prompt (the
    text a chat model continues); ``system_prompt`` None leaves the system message to the template."""
    if not getattr(tokenizer, "chat_template", None):
        raise TaskError("task.chat: the base model's tokenizer has no chat template (use a chat model's base)")
    system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    return [
        tokenizer.apply_chat_template(
            [*system, {"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        for prompt in prompts
    ]


def make_scorer(task: Mapping[str, Any]) -> Scorer:
    """The verifier of the configured task: completion text and the item's entry JSON → reward."""
    if task["source"] == "reasoning_gym":
        import reasoning_gym

        try:
            score_answer = reasoning_gym.get_score_answer_fn(task["dataset"])
        except Exception as error:  # reasoning-gym raises several types for an unknown name
            raise TaskError(f"task.dataset: unknown reasoning-gym dataset {task['dataset']!r}") from error

        extraction = task["answer_extraction"]

        def score_reasoning_gym(completion: str, entry: str) -> float:
            return float(score_answer(extract_answer(completion, extraction), json.loads(entry)))

        return score_reasoning_gym

    from math_verify import parse, verify

    def score_math(completion: str, entry: str) -> float:
        gold = json.loads(entry)["answer"]
        gold_latex = gold if "$" in gold else f"${gold}$"
        return float(
            verify(
                parse(gold_latex, parsing_timeout=None), parse(completion, parsing_timeout=None), timeout_seconds=None
            )
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
    counts = [int(round(task["fractions"][split] * len(frame))) for split in SPLITS[1:]]
    ends = np.cumsum(counts)
    bounds = {split: order[end - count : end] for split, count, end in zip(SPLITS[1:], counts, ends)}
    bounds["train"] = order[ends[-1] :]
    splits = {}
    for split in SPLITS:
        rows = []
        for row in frame.iloc[np.sort(bounds[split])].to_dict("records"):
            item = {"question": str(row[task["question_column"]]), "answer": str(row[task["answer_column"]])}
            rows.append(
                {
                    "prompt": _format_prompt(task["prompt_template"], item),
                    "answer": item["answer"],
                    "entry": json.dumps(item),
                }
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
