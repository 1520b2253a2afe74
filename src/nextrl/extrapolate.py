"""The extrapolate stage: candidate jumps W_T + α·ΔŴ as small PEFT adapters over the round's start model.

NExt (arXiv 2604.11446 §3, step 5): from the predicted triplets per module, ΔŴ = Σ_i σ̂_i û_i v̂_iᵀ with û, v̂
unit vectors, and the candidate Ŵ = W_T + α·ΔŴ. With the round's adapter W_T = W_start + s·B A (B: m×r, A: r×n),
Ŵ − W_start = [s·B, α·σ̂ û] · [A; v̂ᵀ] is exactly a LoRA of rank r + k with scale 1 (lora_alpha = rank), so a
candidate is a few-kilobyte adapter loadable with ``PeftModel.from_pretrained`` and mergeable. α = 0 (the
unjumped adapter) is always a candidate. No candidate with a non-finite weight is ever written.

``candidates.parquet`` schema: alpha float64, adapter str (directory name under candidates/), delta_frob float64
(‖α·ΔŴ‖_F summed in quadrature over modules).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from nextrl.artifacts import atomic_path
from nextrl.extrapolator import ModuleDelta


class ExtrapolationError(ValueError):
    """A jump that must not be written (non-finite delta, unknown module, empty α grid)."""


def candidate_name(alpha: float) -> str:
    return f"alpha_{alpha:g}"


def candidate_factors(
    b: torch.Tensor, a: torch.Tensor, scale: float, delta: ModuleDelta, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRA factors (B', A') with B'A' = s·B A + α·Σ σ̂ û v̂ᵀ (scale 1)."""
    u = torch.from_numpy(np.asarray(delta.u, dtype=np.float32))
    v = torch.from_numpy(np.asarray(delta.v, dtype=np.float32))
    sigma = torch.from_numpy(np.asarray(delta.sigma, dtype=np.float32))
    u = u / u.norm(dim=0, keepdim=True).clamp_min(1e-12)
    v = v / v.norm(dim=0, keepdim=True).clamp_min(1e-12)
    return torch.cat([scale * b, alpha * u * sigma], dim=1), torch.cat([a, v.T], dim=0)


def write_candidates(
    adapter_dir: Path, deltas: dict[str, ModuleDelta], alphas: Sequence[float], output: Path
) -> pd.DataFrame:
    """Write ``output/alpha_<α>/`` adapters for α ∈ {0} ∪ ``alphas`` and ``output/candidates.parquet``."""
    if not alphas:
        raise ExtrapolationError("next.alphas: the α grid is empty; give at least one extension coefficient")
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    rank, lora_alpha = config["r"], config["lora_alpha"]
    scale = lora_alpha / rank**0.5 if config.get("use_rslora") else lora_alpha / rank
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    modules = sorted({key.rsplit(".lora_", 1)[0] for key in weights if ".lora_" in key})
    unknown = sorted(set(deltas) - set(modules))
    missing = sorted(set(modules) - set(deltas))
    if unknown or missing:
        raise ExtrapolationError(f"predicted modules do not match the adapter in {adapter_dir}: unknown {unknown[:3]}, missing {missing[:3]}")
    for module, delta in deltas.items():
        if not delta.is_finite():
            raise ExtrapolationError(f"predicted delta for module {module} is not finite; refusing to write any candidate")
    extra_rank = next(iter(deltas.values())).sigma.shape[0]
    rows = []
    with atomic_path(output) as staging:
        staging.mkdir()
        for alpha in [0.0, *sorted(set(float(a) for a in alphas) - {0.0})]:
            new_weights: dict[str, torch.Tensor] = {}
            squared_norm = 0.0
            for module in modules:
                b, a = weights[f"{module}.lora_B.weight"].float(), weights[f"{module}.lora_A.weight"].float()
                new_b, new_a = candidate_factors(b, a, scale, deltas[module], alpha)
                if not (torch.isfinite(new_b).all() and torch.isfinite(new_a).all()):
                    raise ExtrapolationError(f"candidate α={alpha:g}, module {module}: non-finite weight")
                new_weights[f"{module}.lora_B.weight"] = new_b.contiguous()
                new_weights[f"{module}.lora_A.weight"] = new_a.contiguous()
                squared_norm += float((alpha * torch.as_tensor(deltas[module].sigma)).square().sum())
            directory = staging / candidate_name(alpha)
            directory.mkdir()
            save_file(new_weights, directory / "adapter_model.safetensors")
            new_rank = rank + extra_rank
            new_config = {**config, "r": new_rank, "lora_alpha": new_rank, "use_rslora": False}
            (directory / "adapter_config.json").write_text(json.dumps(new_config, indent=2))
            rows.append({"alpha": alpha, "adapter": directory.name, "delta_frob": squared_norm**0.5})
        table = pd.DataFrame(rows, columns=["alpha", "adapter", "delta_frob"])
        table.to_parquet(staging / "candidates.parquet", index=False)
    return table
