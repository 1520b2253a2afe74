import json

import pandas as pd
import pytest

from nextrl.config import ConfigError, validate_config
from nextrl.tasks import SPLITS, TaskError, build_splits, check_disjoint, extract_answer, make_scorer


def test_splits_share_no_prompt_and_are_nonempty(test_config):
    splits = build_splits(test_config["task"])
    assert list(splits) == list(SPLITS) == ["train", "selection", "validation", "test"]
    prompts = {name: set(frame["prompt"]) for name, frame in splits.items()}
    assert all(len(p) == len(splits[name]) > 0 for name, p in prompts.items())  # de-duplicated within a split
    for position, first in enumerate(SPLITS):
        for second in SPLITS[position + 1 :]:
            assert not prompts[first] & prompts[second], (first, second)
    assert list(splits["train"].columns) == ["index", "prompt", "answer", "entry"]


def test_overlapping_splits_are_refused_naming_both(test_config):
    splits = build_splits(test_config["task"])
    splits["selection"] = pd.concat([splits["selection"], splits["validation"].head(2)], ignore_index=True)
    with pytest.raises(TaskError, match=r"data: the validation split overlaps selection \(2 prompts"):
        check_disjoint(splits, "data")


def test_splits_are_deterministic(test_config):
    first, second = build_splits(test_config["task"]), build_splits(test_config["task"])
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name])


def test_reasoning_gym_scoring(test_config):
    splits = build_splits(test_config["task"])
    row = splits["test"].iloc[0]
    score = make_scorer(test_config["task"])
    assert score(row["answer"], row["entry"]) == 1.0
    assert score(f"<answer>{row['answer']}</answer>", row["entry"]) == 1.0
    assert score(str(int(row["answer"]) + 1), row["entry"]) == 0.0


def test_extract_answer():
    assert extract_answer("  12 ") == "12"
    assert extract_answer("think <answer> 7 </answer> done") == "7"


def _local_task(path, **overrides):
    return {
        "source": "local_file",
        "path": str(path),
        "question_column": "question",
        "answer_column": "answer",
        "fractions": {"selection": 0.2, "validation": 0.2, "test": 0.2},
        "split_seed": 0,
        "prompt_template": "{question}",
        **overrides,
    }


def test_math_verify_scoring_on_a_local_file(tmp_path):
    path = tmp_path / "task.jsonl"
    rows = [{"question": f"What is {i} halves?", "answer": f"\\frac{{{i}}}{{2}}"} for i in range(1, 21)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = _local_task(path)
    splits = build_splits(task)
    assert {name: len(frame) for name, frame in splits.items()} == {
        "train": 8,
        "selection": 4,
        "validation": 4,
        "test": 4,
    }
    score = make_scorer(task)
    entry = json.dumps({"question": "q", "answer": "\\frac{3}{2}"})
    assert score("So the result is \\boxed{1.5}", entry) == 1.0
    assert score("The answer is $\\frac{3}{2}$.", entry) == 1.0
    assert score("\\boxed{2}", entry) == 0.0


def test_local_file_missing_answer_column_is_named(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"q{i}", "solution": "1"}) for i in range(10)))
    with pytest.raises(TaskError, match=r"task.answer_column: column 'answer' is missing"):
        build_splits(_local_task(path))


def test_empty_split_is_rejected(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(json.dumps({"question": "same question", "answer": "1"}) for _ in range(10)))
    with pytest.raises(TaskError, match="split is empty"):
        build_splits(_local_task(path))


def test_unknown_task_name_is_rejected_by_config(test_config):
    test_config["task"]["dataset"] = "no_such_task"
    with pytest.raises(ConfigError, match="task.dataset: unknown reasoning-gym task 'no_such_task'"):
        validate_config(test_config)
