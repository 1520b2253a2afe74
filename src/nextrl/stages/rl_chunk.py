"""The rl_chunk stage: ``rl.chunk_steps`` steps of GRPO-family RLVR with a LoRA adapter (peft) or over every weight,
resumable exactly.

Round r covers RL steps r·C+1 … (r+1)·C. Round 0 attaches a fresh LoRA; every later round resumes the previous
round's training state (:mod:`nextrl.rl.training`): adapter, AdamW state, torch RNG and data cursor. Plain RL starts
every round from the base model, so its chunks equal one continuous run bit for bit. A jump arm starts round r from the
model its jump wrote (``jump.continuation: carry`` folds only α·ΔŴ into it and keeps the LoRA and AdamW, so a jump with
α = 0 continues exactly as plain RL; ``fresh`` attaches a new LoRA and AdamW to the merged model, the paper's way). A
chunk evaluates its start only when that start was not the previous chunk's last, already evaluated, snapshot: in round
0, and after a jump that changed the weights or restarted the adapter.

Full-parameter mode (``rl.mode: full``): the same loop trains every weight; snapshots hold every weight in fp32
(:mod:`nextrl.lowrank.dense_weights`) and the state holds the whole model (``state/model/``) in place of the adapter,
resumed exactly like it. After a jump the round starts from the jumped model and, with ``carry``, the AdamW state
(``fresh``: a new one).

Rollouts come from the trained model's own ``generate`` (``rollout.backend: hf``) or from a vLLM engine built before
the training copy and served the current LoRA every step (``vllm``, :mod:`nextrl.rollouts.vllm_engine`; its per-step
adapter copies live in a temporary directory beside the output).

Output directory (written atomically as a whole): :mod:`nextrl.rl.chunk_layout`; snapshots are PEFT adapters (fp32
safetensors) every ``snapshot_every`` steps, t = global RL step (full mode: every trained weight, fp32);
metrics.parquet has METRIC_COLUMNS (with vLLM rollouts also IS_COLUMNS), eval.parquet EVAL_COLUMNS.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from peft import PeftModel
from tqdm import tqdm

from nextrl.experiment import round_start_step
from nextrl.jobs.artifacts import atomic_path
from nextrl.jobs.tracking import StageRecord
from nextrl.lowrank.jumps import selected_alpha
from nextrl.models import load_tokenizer
from nextrl.rl.chunk_layout import EVAL_COLUMNS, METRIC_COLUMNS, ChunkLayout
from nextrl.rl.importance import IS_COLUMNS
from nextrl.rl.lr_schedule import learning_rate
from nextrl.rl.training import (
    RLError,
    attach_lora,
    full_parameter_model,
    grpo_step,
    load_training_state,
    save_snapshot,
    save_training_state,
    train_order,
)  # fmt: skip
from nextrl.rollouts.accuracy import evaluate_model
from nextrl.rollouts.generation import HFGenerateBackend
from nextrl.rollouts.vllm_engine import VLLMBackend, engine_options, vllm_api
from nextrl.runtime import forward_context, resolve_device, training_model
from nextrl.seeding import stage_seed
from nextrl.tasks import make_scorer


def run(
    config: Mapping[str, Any],
    *,
    start_model: Path,
    resume: Path | None,
    jump_selection: Path | None,
    data: Path,
    output: Path,
    seed: int,
    round_index: int,
) -> StageRecord:
    """Train one chunk from ``start_model`` (resuming the previous chunk's output ``resume`` when given) and write
    ``output``."""
    rl, evaluation = config["rl"], config["eval"]
    first_step = round_start_step(config, round_index)
    tokenizer = load_tokenizer(start_model)
    previous = ChunkLayout(resume) if resume is not None else None
    saved = load_training_state(previous, first_step) if previous is not None else None
    jumped = jump_selection is not None and selected_alpha(pd.read_parquet(jump_selection)) != 0.0
    fresh_adapter = saved is None or (jump_selection is not None and config["jump"]["continuation"] == "fresh")
    runtime, full = config["runtime"], rl["mode"] == "full"
    device = resolve_device(runtime)
    vllm = config["rollout"]["backend"] == "vllm"
    if vllm:  # the engine first: it sizes its memory share before the training copy exists (docs/gpu.md)
        api = vllm_api()
        options = engine_options([config["lora"]["r"]], config["rollout"]["gpu_memory_utilization"],
                                 stage_seed(seed, round_index), runtime["dtype"])  # fmt: skip
        engine = api.LLM(model=str(start_model), **options)
    if full:  # the previous round's own weights, unless a jump wrote the start model
        resumes_weights = saved is not None and jump_selection is None
        source = previous.model if resumes_weights else start_model
        model = full_parameter_model(training_model(source, runtime, device, full))
    else:
        base = training_model(start_model, runtime, device, full)
        if fresh_adapter:
            model = attach_lora(base, config["lora"], seed=stage_seed(seed, round_index))
        else:
            model = PeftModel.from_pretrained(base, previous.adapter, is_trainable=True)
    if full or runtime["dtype"] == "float32":
        model.float()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=rl["lr"], weight_decay=rl["weight_decay"], betas=(0.9, 0.99))
    if saved is None:
        torch.manual_seed(stage_seed(seed, round_index))
        cursor = 0
    else:
        if not fresh_adapter:
            optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["torch_rng"])
        cursor = saved["cursor"]

    train = pd.read_parquet(data / "train.parquet")
    validation = pd.read_parquet(data / "validation.parquet")
    scorer = make_scorer(config["task"])
    output.parent.mkdir(parents=True, exist_ok=True)
    served = tempfile.TemporaryDirectory(prefix=".vllm_adapters.", dir=output.parent) if vllm else None
    backend = (
        VLLMBackend(api, engine, tokenizer, model.save_pretrained, Path(served.name), options["max_lora_rank"])
        if vllm
        else HFGenerateBackend(model, tokenizer, batch_size=rl["generation_batch_size"])
    )

    def validation_accuracy(step: int) -> dict[str, Any]:
        scored = evaluate_model(model, tokenizer, validation, scorer, evaluation, f"validation @ {step}")
        return {"step": step, "split": "validation", "accuracy": float(scored["reward"].mean()), "n_items": len(scored)}

    with atomic_path(output) as staging:
        staging.mkdir()
        chunk = ChunkLayout(staging)
        evaluations = [validation_accuracy(first_step)] if fresh_adapter or jumped else []
        metrics = []
        progress = tqdm(
            range(first_step + 1, first_step + rl["chunk_steps"] + 1), desc=f"RL round {round_index}", mininterval=2.0
        )
        for step in progress:
            began = time.perf_counter()
            batch = train.iloc[train_order(seed, cursor, rl["prompts_per_step"], len(train))]
            cursor += rl["prompts_per_step"]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(rl, step)
            row = grpo_step(model, optimizer, backend, scorer, batch, rl, forward_context(runtime, device))
            if not math.isfinite(row["loss"]):
                raise RLError(
                    f"rl: non-finite loss ({row['loss']}) at RL step {step}; lower rl.lr or check the rewards"
                )
            metrics.append({"step": step, **row, "seconds": time.perf_counter() - began})
            if (step - first_step) % rl["snapshot_every"] == 0:
                save_snapshot(model, chunk.snapshot(step))
                evaluations.append(validation_accuracy(step))
            progress.set_postfix(
                reward=f"{row['reward_mean']:.3f}",
                val_acc=f"{evaluations[-1]['accuracy']:.3f}" if evaluations else "-",
                refresh=False,
            )
        progress.close()
        save_training_state(chunk, model, tokenizer, optimizer, first_step + rl["chunk_steps"], cursor)
        metrics_table = pd.DataFrame(metrics, columns=list(METRIC_COLUMNS) + (list(IS_COLUMNS) if vllm else []))
        eval_table = pd.DataFrame(evaluations, columns=list(EVAL_COLUMNS))
        metrics_table.to_parquet(chunk.metrics, index=False)
        eval_table.to_parquet(chunk.evaluations, index=False)
    validation_curve = eval_table[["step", "accuracy"]].rename(columns={"accuracy": "val_accuracy"})
    return StageRecord(
        params={"rl": dict(rl), "lora": dict(config["lora"]), "fresh_adapter": fresh_adapter, "jumped": jumped},
        step_metrics=metrics_table.merge(validation_curve, "left", "step"),
        artifacts=[ChunkLayout(output).metrics, ChunkLayout(output).evaluations],
    )
