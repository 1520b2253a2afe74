"""The base that ships with nextrl: its files match their digests, the README states its checksum and validation
accuracy, this machine reproduces that accuracy, a changed file is named, and the base_model stage copies it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from nextrl.config import ConfigError, validate_config
from nextrl.shipped_base import (
    BASES,
    MANIFEST,
    WEIGHTS,
    ShippedBaseError,
    recipe,
    shipped_base_dir,
    validation_accuracy,
    verify,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nextrl.stages import data

    output = tmp_path_factory.mktemp("shipped") / "data"
    data.run(recipe(verify(shipped_base_dir("default"))), output=output)
    return output


def test_the_default_base_has_the_checksum_and_validation_accuracy_the_readme_states(default_data: Path):
    recorded = verify(shipped_base_dir("default"))
    stated = re.search(r"`model.safetensors`\s+SHA-256\s+`([0-9a-f]{64})`,\s+validation\s+accuracy\s+([0-9.]+)",
                       (REPO / "README.md").read_text())  # fmt: skip
    assert stated is not None, "README: the shipped base's line is missing"
    assert stated.group(1) == recorded["sha256"][WEIGHTS]
    assert float(stated.group(2)) == pytest.approx(recorded["validation_accuracy"], abs=5e-4)
    items = len(pd.read_parquet(default_data / "validation.parquet"))
    measured = validation_accuracy(shipped_base_dir("default"), default_data, recipe(recorded))
    # greedy decoding of identical weights: at most an argmax tie apart on another CPU's rounding
    assert measured == pytest.approx(recorded["validation_accuracy"], abs=2 / items)


def test_a_changed_or_missing_file_is_named(tmp_path: Path):
    copy = tmp_path / "default"
    shutil.copytree(shipped_base_dir("default"), copy)
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    with pytest.raises(
        ShippedBaseError, match=f"model.name: the shipped base's file {copy / 'config.json'} is changed"
    ):
        verify(copy)
    shutil.copy(shipped_base_dir("default") / "config.json", copy)
    (copy / WEIGHTS).unlink()
    with pytest.raises(ShippedBaseError, match=f"{copy / WEIGHTS} is missing"):
        verify(copy)


def test_the_base_model_stage_copies_the_shipped_base_and_rejects_an_unknown_name(test_config, tmp_path: Path):
    from nextrl.stages import base_model

    config = validate_config({**test_config, "model": {"source": "shipped", "name": "default"}})
    base_model.run(config, data=tmp_path, output=tmp_path / "base")
    assert (tmp_path / "base" / WEIGHTS).read_bytes() == (shipped_base_dir("default") / WEIGHTS).read_bytes()
    with pytest.raises(ConfigError, match="model.name: 'nope' is not one of"):
        validate_config({**test_config, "model": {"source": "shipped", "name": "nope"}})


def test_the_schema_lists_exactly_the_shipped_bases():
    schema = yaml.safe_load((REPO / "src" / "nextrl" / "config.schema.yaml").read_text())
    names = schema["properties"]["model"]["properties"]["name"]["enum"]
    assert sorted(names) == sorted(path.parent.name for path in BASES.glob(f"*/{MANIFEST}"))
