"""Models and tokenizers: the embedded tiny Qwen2 model with a character tokenizer, and loading of HF model dirs.

The embedded default needs no hub: a character-level tokenizer is built with the ``tokenizers`` library (BPE
with no merges over printable ASCII, so every character is one token) and saved as a transformers fast
tokenizer; a tiny Qwen2-architecture causal LM is built from a config. Both are saved as a standard HF model
directory. A char tokenizer saved next to a Qwen2 config is silently replaced by Qwen2's tokenizer when loaded
through ``AutoTokenizer``, so :func:`load_tokenizer` honours the recorded ``tokenizer_class``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
# transformers 5 saves PreTrainedTokenizerFast as its new name, TokenizersBackend.
GENERIC_FAST_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


class ModelError(ValueError):
    """A model directory that cannot be used; the message names the path."""


def build_char_tokenizer() -> PreTrainedTokenizerBase:
    """A character-level fast tokenizer: specials <pad>, <eos>, <unk>, then printable ASCII (32–126)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([PAD, EOS, UNK] + [chr(c) for c in range(32, 127)])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, shape: Mapping[str, int], seed: int) -> PreTrainedModel:
    """A tiny Qwen2-architecture causal LM (fp32) initialised from ``seed``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_kv_heads"],
        max_position_embeddings=shape["max_positions"],
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).float()


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in ``model_dir``, left-padding, with a pad token."""
    config_path = model_dir / "tokenizer_config.json"
    if not config_path.is_file():
        raise ModelError(f"model.path: {model_dir} is not a model directory (no tokenizer_config.json)")
    if json.loads(config_path.read_text()).get("tokenizer_class") in GENERIC_FAST_TOKENIZER_CLASSES:
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_dir: Path, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The causal LM saved in ``model_dir`` (fp32 by default: deltas are taken in fp32)."""
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"model.path: {model_dir} is not a model directory (no config.json)")
    try:
        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except (OSError, ValueError) as error:
        raise ModelError(f"model.path: cannot load a causal LM from {model_dir}: {error}") from error


def declared_dtype(model_dir: Path) -> torch.dtype:
    """The dtype a HF model directory declares in config.json (``dtype`` or ``torch_dtype``; fp32 if neither)."""
    declared = json.loads((model_dir / "config.json").read_text())
    name = declared.get("dtype") or declared.get("torch_dtype") or "float32"
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelError(f"{model_dir / 'config.json'}: unknown dtype {name!r}")
    return dtype


def check_model_dir(model_dir: Path) -> None:
    """Raise :class:`ModelError` naming the path unless it holds a config, weights and a tokenizer."""
    if not model_dir.is_dir():
        raise ModelError(f"model.path: {model_dir} does not exist or is not a directory")
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"model.path: {model_dir} is not a model directory (no config.json)")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        raise ModelError(f"model.path: {model_dir} has no weights (*.safetensors or *.bin)")
    load_tokenizer(model_dir)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    """Save weights (safetensors) and tokenizer as a standard HF model directory."""
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
