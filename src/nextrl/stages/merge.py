"""The merge stage (``import.merge``): every candidate adapter merged into the base model as a HF model directory,
ready to continue training in the user's framework.

Each candidate W_T + α·ΔŴ is a PEFT adapter over the base model (:mod:`nextrl.lowrank.jumps`); peft merges it in fp32
(``merge_and_unload``), and the result is saved in the dtype the base model declares
(:func:`nextrl.models.declared_dtype`) with the base's tokenizer. Output: ``alpha_<α>/`` per candidate, as
candidates.parquet lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from peft import PeftModel

from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.models import declared_dtype, load_model, load_tokenizer, save_model


def run(config: Mapping[str, Any], *, base_model: Path, candidates: Path, output: Path) -> StageRecord:
    table = pd.read_parquet(candidates / "candidates.parquet")
    tokenizer = load_tokenizer(base_model)
    dtype = declared_dtype(base_model)
    with atomic_path(output) as staging:
        staging.mkdir()
        for name in table["adapter"]:
            model = PeftModel.from_pretrained(load_model(base_model), candidates / name).merge_and_unload()
            save_model(model.to(dtype), tokenizer, staging / name)
    return StageRecord(metrics={"merged": float(len(table))})
