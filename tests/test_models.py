import numpy as np
import pytest
import torch

from nextrl.models import (
    ModelError,
    build_char_tokenizer,
    build_tiny_model,
    check_model_dir,
    load_model,
    load_tokenizer,
    save_model,
)
from nextrl.warm_start import off_by_one_labels, warm_start_lr

SHAPE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_layers": 2,
    "num_heads": 2,
    "num_kv_heads": 1,
    "max_positions": 32,
}


def test_char_tokenizer_round_trip(tmp_path):
    tokenizer = build_char_tokenizer()
    ids = tokenizer("12+34=", add_special_tokens=False)["input_ids"]
    assert len(ids) == 6  # one token per character
    assert tokenizer.decode(ids) == "12+34="
    model = build_tiny_model(tokenizer, SHAPE, seed=0)
    save_model(model, tokenizer, tmp_path)  # next to a Qwen2 config.json, as in the gotcha
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(tokenizer)  # not silently replaced by Qwen2Tokenizer
    assert loaded("12+34=", add_special_tokens=False)["input_ids"] == ids
    assert loaded.eos_token == "<eos>" and loaded.pad_token == "<pad>" and loaded.padding_side == "left"


def test_model_save_load_round_trip(tmp_path):
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, SHAPE, seed=3)
    save_model(model, tokenizer, tmp_path)
    check_model_dir(tmp_path)
    loaded = load_model(tmp_path)
    for (name, expected), (_, actual) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(expected, actual), name
    assert loaded.dtype == torch.float32


def test_missing_or_non_model_path_is_named(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        check_model_dir(tmp_path / "absent")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelError, match="not a model directory"):
        check_model_dir(tmp_path)


def test_off_by_one_labels_replace_the_share_asked_with_a_neighbour():
    answers = [str(n) for n in range(1000)]
    labels = off_by_one_labels(answers, 0.5, np.random.default_rng(0))
    changed = [(int(a), int(b)) for a, b in zip(answers, labels) if a != b]
    assert 430 < len(changed) < 570
    assert all(abs(a - b) == 1 for a, b in changed)
    assert off_by_one_labels(answers, 0.0, np.random.default_rng(0)) == answers
    with pytest.raises(ValueError, match="model.warm_start.off_by_one"):
        off_by_one_labels(["x"], 1.0, np.random.default_rng(0))


def test_warm_start_lr_is_constant_or_a_cosine_to_zero():
    constant = {"lr": 0.5, "steps": 10, "schedule": "constant"}
    cosine = {**constant, "schedule": "cosine"}
    assert [warm_start_lr(step, constant) for step in (0, 5, 10)] == [0.5, 0.5, 0.5]
    assert [warm_start_lr(step, cosine) for step in (0, 5, 10)] == pytest.approx([0.5, 0.25, 0.0])
    assert warm_start_lr(0, {**cosine, "steps": 0}) == 0.5  # no warm-start steps: the scheduler's first call is fine
