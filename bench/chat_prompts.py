"""Which system prompt and user message a chat model answers best, before any RL: the base's greedy accuracy, its
sampled accuracy and the share of sampled groups that disagree (the groups GRPO learns from) per prompt variant.

For each variant (system prompt, user message with ``{e}`` for the item's expression), the first ``--items``
validation items are rendered through the model's chat template (:func:`nextrl.tasks.render_chat`) and scored by the
config's scorer; ``--group`` samples per item for the first half of them at ``--temperature`` (torch seeded
with ``--seed`` before each variant's sampling).

Usage, on the SmolLM2 experiment's base and data (``make smollm2`` builds them; nothing is downloaded)::

    python bench/chat_prompts.py --model results/smollm2/base --data results/smollm2/data --config config/smollm2.yaml
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

import nextrl  # noqa: F401  (offline environment)
from nextrl.config import load_config
from nextrl.models import load_model, load_tokenizer
from nextrl.rollouts.accuracy import evaluate_split
from nextrl.rollouts.generation import HFGenerateBackend
from nextrl.tasks import make_scorer, render_chat

VARIANTS = {
    "'Answer briefly.' / 'What is {e}? Answer with the number only.'": (
        "Answer briefly.",
        "What is {e}? Answer with the number only.",
    ),
    "template's own / 'What is {e}? Answer with the number only.'": (None, "What is {e}? Answer with the number only."),
    "'You are a calculator. Reply with the number only.' / '{e} ='": (
        "You are a calculator. Reply with the number only.",
        "{e} =",
    ),
    "template's own / 'What is {e}?'": (None, "What is {e}?"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a chat model's HF directory (the experiment's base)")
    parser.add_argument("--data", type=Path, required=True, help="the experiment's data directory (split Parquets)")
    parser.add_argument("--config", type=Path, required=True, help="its config (task, eval)")
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0, help="torch's seed before each variant's sampling")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    tokenizer, scorer = load_tokenizer(args.model), make_scorer(config["task"])
    backend = HFGenerateBackend(load_model(args.model).eval(), tokenizer, batch_size=config["eval"]["batch_size"])
    items = pd.read_parquet(args.data / "validation.parquet").head(args.items).copy()
    expressions = [json.loads(entry)["metadata"]["expression"] for entry in items["entry"]]
    tokens, sampled_items = config["eval"]["max_new_tokens"], len(items) // 2
    rows = []
    for name, (system_prompt, user) in VARIANTS.items():
        items["prompt"] = render_chat([user.format(e=e) for e in expressions], tokenizer, system_prompt)
        greedy = evaluate_split(backend, items, scorer, tokens, config["eval"]["batch_size"])
        torch.manual_seed(args.seed)
        rollouts = backend.generate(items["prompt"].head(sampled_items).tolist(), args.group, tokens, args.temperature)
        entries = [entry for entry in items["entry"].head(sampled_items) for _ in range(args.group)]
        rewards = torch.tensor([scorer(text, entry) for text, entry in zip(rollouts.texts, entries, strict=True)])
        groups = rewards.view(sampled_items, args.group)
        rows.append({"system / user": name, "prompt_tokens": len(tokenizer(items["prompt"].iloc[0])["input_ids"]),
                     "greedy": greedy["reward"].mean(), f"sampled_T{args.temperature:g}": float(rewards.mean()),
                     "groups_that_disagree": float((groups.std(dim=1) > 0).float().mean()),
                     "first_greedy_reply": greedy["completion"].iloc[0]})  # fmt: skip
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
