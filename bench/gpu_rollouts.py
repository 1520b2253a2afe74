"""Issue 10 step 7 on a GPU: rollout tokens/s (HF generate vs vLLM), one GRPO step's time and peak memory, and the
vLLM-vs-trainer log-prob gap. Appends one row per backend to ``<out>/gpu_rollouts.csv`` and prints them.

Usage (a model directory and the embedded arithmetic prompts; nothing is downloaded)::

    python bench/gpu_rollouts.py --model results/gpu-smoke/base --backends hf vllm --prompts 64 --group 8

``--backends hf`` runs on the CPU too (device ``cpu``), which is how this script is checked without a GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import nextrl  # noqa: F401  (offline environment)
from nextrl.models import load_tokenizer
from nextrl.rl.loss import token_logprobs
from nextrl.rl.training import attach_lora, completion_logits, grpo_step
from nextrl.rollouts.generation import HFGenerateBackend
from nextrl.runtime import resolve_device, training_model


def arithmetic_batch(count: int) -> pd.DataFrame:
    prompts = [f"{a}+{b}=" for a, b in zip(range(10, 10 + count), range(37, 37 + count), strict=True)]
    return pd.DataFrame({"prompt": prompts, "entry": [str(eval(p[:-1])) for p in prompts]})


def measure(args: argparse.Namespace, backend_name: str) -> dict[str, object]:
    runtime = {"device": args.device, "dtype": args.dtype, "gradient_checkpointing": True}
    device = resolve_device(runtime)
    tokenizer = load_tokenizer(args.model)
    rl = {"group_size": args.group, "max_new_tokens": args.max_new_tokens, "temperature": 1.0, "advantage": "grpo",
          "scale_by_std": True, "clip_eps": 0.2, "aggregation": "token", "kl_coef": 0.0, "kl_estimator": "k3",
          "updates_per_batch": 1, "max_grad_norm": 1.0, "micro_batch_tokens": args.micro_batch_tokens,
          "rollout_is_cap": 2.0}  # fmt: skip
    lora = {"r": args.rank, "alpha": 2 * args.rank, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    if backend_name == "vllm":
        from nextrl.rollouts.vllm_engine import VLLMBackend, engine_options, vllm_api

        api = vllm_api()
        engine = api.LLM(model=str(args.model), **engine_options([args.rank], 0.3, 0, runtime["dtype"]))
    model = attach_lora(training_model(args.model, runtime, device, full=False), lora, seed=0)
    scratch = tempfile.TemporaryDirectory()
    backend = (
        VLLMBackend(api, engine, tokenizer, model.save_pretrained, Path(scratch.name))
        if backend_name == "vllm"
        else HFGenerateBackend(model, tokenizer, batch_size=args.prompts * args.group)
    )
    batch = arithmetic_batch(args.prompts)
    backend.sync()
    began = time.perf_counter()
    rollouts = backend.generate(batch["prompt"].tolist(), args.group, args.max_new_tokens, 1.0)
    rollout_seconds = time.perf_counter() - began
    tokens = int(rollouts.completion_mask.sum())
    row: dict[str, object] = {"backend": backend_name, "device": str(device), "tokens": tokens,
                              "rollout_tokens_per_s": tokens / rollout_seconds}  # fmt: skip
    if rollouts.sampler_logprobs is not None:
        with torch.no_grad():
            trainer = token_logprobs(completion_logits(model, rollouts), rollouts.completion_ids.to(device), 1.0)
        mask = rollouts.completion_mask.to(device)
        gap = ((trainer - rollouts.sampler_logprobs.to(device)).abs() * mask).sum() / mask.sum()
        row["mean_abs_logprob_gap"] = float(gap)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    metrics = grpo_step(model, optimizer, backend, lambda text, entry: float(text.strip() == entry), batch, rl)
    row["step_seconds"] = time.perf_counter() - began
    row["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    row["step_reward_mean"] = metrics["reward_mean"]
    after = backend.generate(batch["prompt"].tolist()[:4], args.group, args.max_new_tokens, 1.0)
    row["rollouts_after_update_differ"] = after.texts != rollouts.texts[: 4 * args.group]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a HF model directory")
    parser.add_argument("--backends", nargs="+", choices=["hf", "vllm"], default=["hf", "vllm"])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--micro-batch-tokens", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()
    rows = pd.DataFrame([measure(args, name) for name in args.backends])
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "gpu_rollouts.csv"
    previous = pd.read_csv(results) if results.exists() else pd.DataFrame()
    pd.concat([previous, rows], ignore_index=True).to_csv(results, index=False)
    print(rows.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
