"""HF generate vs vLLM on one model directory: what each engine costs a job, and what it returns.

Four tables, printed as Markdown and written to ``<out>/rollout_engines_<table>.csv``:

* ``startup``: seconds to import each engine's library in a fresh interpreter, and to build a vLLM engine (LoRA
  enabled, as every nextrl job builds it).
* ``tokens``: sampling throughput (completion tokens per second, T = 1) of the base model and of a rank-``r`` LoRA
  on it, for an RL step's batch (``--prompts`` × ``--group``) and for ``--eval-items`` prompts.
* ``greedy``: greedy evaluation of ``--eval-items`` split items, the way the evaluate, select and probe jobs score
  (seconds, accuracy, and the share of completions the two engines agree on).
* ``step``: ``--steps`` GRPO steps per rollout backend, split into generation (sync + sample), scoring (rewards,
  log-probs) and update (the ``*_seconds`` columns of metrics.parquet), medians over the steps after the first.

Usage, on the default experiment's base and data (``make run`` builds them; nothing is downloaded)::

    python bench/rollout_engines.py --model results/default/base --data results/default/data

Without vLLM installed only the HF rows are measured. On a GPU add ``--device cuda --dtype bfloat16``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

import nextrl  # noqa: F401  (offline environment)
from nextrl.models import load_tokenizer
from nextrl.rl.training import attach_lora, grpo_step
from nextrl.rollouts.accuracy import evaluate_split
from nextrl.rollouts.generation import HFGenerateBackend
from nextrl.rollouts.vllm_engine import (
    VLLMBackend,
    engine_options,
    lora_slot,
    score_candidates,
    token_prompts,
    vllm_api,
    vllm_installed,
)
from nextrl.runtime import resolve_device, training_model
from nextrl.tasks import make_scorer


def import_seconds(statement: str) -> float:
    code = f"import time; began = time.perf_counter(); {statement}; print(time.perf_counter() - began)"
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def random_adapter(model_dir: Path, runtime: dict[str, Any], lora: dict[str, Any], directory: Path) -> Path:
    """A rank-``r`` adapter with small random B (peft starts B at 0, which would leave the model unchanged)."""
    model = attach_lora(training_model(model_dir, runtime, torch.device("cpu"), full=False), lora, seed=1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.02)
    model.save_pretrained(directory)
    return directory


def tokens_per_second(backend: Any, prompts: list[str], samples: int, max_new_tokens: int) -> float:
    backend.sync()
    began = time.perf_counter()
    rollouts = backend.generate(prompts, samples, max_new_tokens, 1.0)
    return float(rollouts.completion_mask.sum()) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a HF model directory (the experiment's base)")
    parser.add_argument("--data", type=Path, required=True, help="the experiment's data directory (split Parquets)")
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="its config (task, rl, eval)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--eval-items", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()

    from nextrl.config import load_config

    config = load_config(args.config)
    rl = {**config["rl"], "group_size": args.group, "prompts_per_step": args.prompts}
    evaluation, lora = config["eval"], dict(config["lora"])
    runtime = {"device": args.device, "dtype": args.dtype, "gradient_checkpointing": False}
    device = resolve_device(runtime)
    tokenizer = load_tokenizer(args.model)
    scorer = make_scorer(config["task"])
    train = pd.read_parquet(args.data / "train.parquet")
    items = pd.read_parquet(args.data / "validation.parquet").head(args.eval_items)
    step_prompts = train["prompt"].head(args.prompts).tolist()
    eval_prompts = items["prompt"].tolist()
    engines = [engine for engine in args.engines if engine == "hf" or vllm_installed()]
    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="rollout_engines."))
    adapter = random_adapter(args.model, runtime, lora, scratch / "adapter")

    startup = [{"what": "import transformers + peft", "seconds": import_seconds("import transformers, peft")}]
    tokens, greedy, steps = [], [], []
    hf_base = training_model(args.model, runtime, device, full=False).eval()
    from peft import PeftModel

    hf_lora = PeftModel.from_pretrained(training_model(args.model, runtime, device, full=False), adapter).eval()
    for name, model in (("base", hf_base), (f"LoRA r={lora['r']}", hf_lora)):
        backend = HFGenerateBackend(model, tokenizer, batch_size=evaluation["batch_size"])
        for batch, prompts, samples in (("RL step", step_prompts, args.group), ("eval items", eval_prompts, 1)):
            rate = tokens_per_second(backend, prompts, samples, rl["max_new_tokens"])
            tokens.append({"engine": "hf", "model": name, "batch": batch, "tokens_per_s": rate})
    began = time.perf_counter()
    hf_greedy = evaluate_split(HFGenerateBackend(hf_lora, tokenizer, evaluation["batch_size"]), items, scorer,
                               evaluation["max_new_tokens"], evaluation["batch_size"])  # fmt: skip
    greedy.append({"engine": "hf", "items": len(items), "seconds": time.perf_counter() - began,
                   "accuracy": hf_greedy["reward"].mean(), "same_completions": 1.0})  # fmt: skip

    if "vllm" in engines:
        startup.append({"what": "import vllm", "seconds": import_seconds("import vllm")})
        api = vllm_api()
        began = time.perf_counter()
        engine = api.LLM(model=str(args.model), **engine_options([lora["r"]], 0.3, 0, args.dtype))
        startup.append({"what": "vLLM engine start (LoRA enabled)", "seconds": time.perf_counter() - began})
        served = api.LoRARequest("bench", 1, str(adapter))
        for name, request in (("base", None), (f"LoRA r={lora['r']}", served)):
            for batch, prompts, samples in (("RL step", step_prompts, args.group), ("eval items", eval_prompts, 1)):
                params = api.SamplingParams(n=samples, temperature=1.0, max_tokens=rl["max_new_tokens"])
                began = time.perf_counter()
                outputs = engine.generate(token_prompts(tokenizer, prompts), params, lora_request=request,
                                          use_tqdm=False)  # fmt: skip
                count = sum(len(sample.token_ids) for output in outputs for sample in output.outputs)
                tokens.append({"engine": "vllm", "model": name, "batch": batch,
                               "tokens_per_s": count / (time.perf_counter() - began)})  # fmt: skip
        began = time.perf_counter()
        texts = score_candidates(api, engine, tokenizer, {"bench": adapter}, eval_prompts,
                                 evaluation["max_new_tokens"], lora_slot(lora["r"]))["bench"]  # fmt: skip
        rewards = [scorer(text, entry) for text, entry in zip(texts, items["entry"], strict=True)]
        same = statistics.fmean(a == b for a, b in zip(texts, hf_greedy["completion"], strict=True))
        greedy.append({"engine": "vllm", "items": len(items), "seconds": time.perf_counter() - began,
                       "accuracy": statistics.fmean(rewards), "same_completions": same})  # fmt: skip

    for engine_name in engines:
        model = attach_lora(training_model(args.model, runtime, device, full=False), lora, seed=0)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=rl["lr"])
        backend = (
            VLLMBackend(api, engine, tokenizer, model.save_pretrained, scratch / "served", lora_slot(lora["r"]))
            if engine_name == "vllm"
            else HFGenerateBackend(model, tokenizer, batch_size=rl["generation_batch_size"])
        )
        rows = []
        for step in range(args.steps):
            batch = train.iloc[step * args.prompts : (step + 1) * args.prompts]
            rows.append(grpo_step(model, optimizer, backend, scorer, batch, rl))
        timed = pd.DataFrame(rows).iloc[1:]
        steps.append({"backend": engine_name, **{column: timed[column].median() for column in
                      ("generation_seconds", "scoring_seconds", "update_seconds")}})  # fmt: skip

    args.out.mkdir(parents=True, exist_ok=True)
    for title, rows in (("startup", startup), ("tokens", tokens), ("greedy", greedy), ("step", steps)):
        table = pd.DataFrame(rows)
        table.to_csv(args.out / f"rollout_engines_{title}.csv", index=False)
        print(f"\n{title}\n" + table.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
