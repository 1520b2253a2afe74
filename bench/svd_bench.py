"""Benchmark: factored LoRA-delta SVD (nextrl.lowrank.svd) vs the dense merged-matrix SVD.

NExt (arXiv 2604.11446, §3) keeps the top singular triplets of every LoRA weight delta.
The reference code merged s·B A into an m×n matrix and ran a dense SVD; nextrl computes
the same triplets from the factors (QR + small core SVD), as the trajectory does: the
delta's factors from :func:`nextrl.lowrank.trajectory_table.difference`, their triplets
from :func:`nextrl.lowrank.svd.factored_triplets`. This script prints

1. timing and agreement of the two paths on random LoRA factors, for the global delta
   s·B A and the local delta s·(B_1 A_1 − B_0 A_0);
2. the bytes one trajectory snapshot of triplets takes vs a merged float32 model, for a
   Qwen2.5-1.5B-like set of matrices.

Not a test: no assertion on timings. Run with
``PYTHONPATH=src .venv/bin/python bench/svd_bench.py [--quick] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nextrl.lowrank.adapters import Adapter
from nextrl.lowrank.svd import Triplets, canonicalize_signs, factored_triplets
from nextrl.lowrank.trajectory_table import difference

FULL_CASES: tuple[tuple[int, int, int], ...] = (
    (4096, 4096, 16),
    (4096, 4096, 64),
    (1536, 8960, 16),
    (1536, 8960, 64),
)
QUICK_CASES: tuple[tuple[int, int, int], ...] = ((4096, 4096, 16),)
LOCAL_CASE: tuple[int, int, int] = (4096, 4096, 16)
B_INIT_SCALE = 1e-2
LOCAL_STEP_SCALE = 1e-1  # relative size of the change between the two checkpoints
TRIPLETS_PER_MODULE = 1  # k
LORA_ALPHA_PER_RANK = 2  # alpha = 2r
MODULE = "bench"  # the one module of each benchmark adapter

FLOAT32_BYTES = 4
SNAPSHOT_SCALARS_PER_MODULE = 2  # E1 and ‖Δ‖_F, stored next to the k triplets
SNAPSHOT_KINDS = ("global", "local", "target")
QWEN_LAYERS = 28
QWEN_LAYER_MATRICES: tuple[tuple[str, int, int], ...] = (
    ("q_proj", 1536, 1536),
    ("k_proj", 256, 1536),
    ("v_proj", 256, 1536),
    ("o_proj", 1536, 1536),
    ("gate_proj", 8960, 1536),
    ("up_proj", 8960, 1536),
    ("down_proj", 1536, 8960),
)
QWEN_EMBEDDING = ("embed_tokens", 151936, 1536)


@dataclass(frozen=True)
class BenchRow:
    """One line of the timing table."""

    shape: tuple[int, int]
    rank: int
    kind: str
    factored_ms: float
    dense_s: float
    sigma_error: float
    u_error: float
    v_error: float

    def markdown(self) -> str:
        """The row as a markdown table line."""
        speedup = self.dense_s * 1e3 / self.factored_ms
        return (
            f"| {self.shape[0]}×{self.shape[1]} | {self.rank} | {self.kind} "
            f"| {self.factored_ms:.1f} | {self.dense_s:.2f} | {speedup:,.0f} "
            f"| {self.sigma_error:.1e} | {self.u_error:.1e} | {self.v_error:.1e} |"
        )


def random_lora(m: int, n: int, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random float32 LoRA factors: B (m×rank) scaled by 1e-2, A (rank×n) standard normal."""
    b = B_INIT_SCALE * torch.randn(m, rank, generator=generator)
    a = torch.randn(rank, n, generator=generator)
    return b, a


def lora_scale(rank: int) -> float:
    """LoRA scaling s = alpha / r with alpha = 2r."""
    return LORA_ALPHA_PER_RANK * rank / rank


def adapter(b: torch.Tensor, a: torch.Tensor, scale: float) -> Adapter:
    """A one-module adapter ``MODULE`` holding (B, A) at LoRA scale ``scale``."""
    return Adapter({MODULE: (b, a)}, scale, {})


def median_seconds(function: Callable[[], Triplets], repeats: int) -> tuple[float, Triplets]:
    """Median wall time of ``repeats`` calls and the last result (one untimed warm-up first)."""
    result = function()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings), result


def dense_top_triplet(
    delta: torch.Tensor,
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dense path as in the reference code: float32 SVD of the merged m×n delta.

    Returns the wall time in seconds and the canonicalized top (σ_1, u_1, v_1).
    """
    start = time.perf_counter()
    u, sigma, vh = torch.linalg.svd(delta, full_matrices=False)
    elapsed = time.perf_counter() - start
    top_u, top_v = canonicalize_signs(u[:, :1], vh[:1].T)
    return elapsed, sigma[:1], top_u, top_v


def compare(
    shape: tuple[int, int],
    rank: int,
    kind: str,
    factored: Callable[[], Triplets],
    merge: Callable[[], torch.Tensor],
    repeats: int,
) -> BenchRow:
    """Time both paths for one delta and measure how far apart their top triplets are."""
    factored_s, triplets = median_seconds(factored, repeats)
    merge_start = time.perf_counter()
    delta = merge()
    merge_s = time.perf_counter() - merge_start
    svd_s, dense_sigma, dense_u, dense_v = dense_top_triplet(delta)
    return BenchRow(
        shape=shape,
        rank=rank,
        kind=kind,
        factored_ms=factored_s * 1e3,
        dense_s=merge_s + svd_s,
        sigma_error=float((triplets.sigma[:1] - dense_sigma).abs().max() / dense_sigma[0]),
        u_error=float((triplets.u[:, :1] - dense_u).abs().max()),
        v_error=float((triplets.v[:, :1] - dense_v).abs().max()),
    )


def global_row(m: int, n: int, rank: int, repeats: int, generator: torch.Generator) -> BenchRow:
    """Global delta s·B A."""
    b, a = random_lora(m, n, rank, generator)
    scale = lora_scale(rank)
    return compare(
        (m, n),
        rank,
        "global",
        lambda: factored_triplets(*difference(adapter(b, a, scale), None, MODULE), TRIPLETS_PER_MODULE),
        lambda: scale * b @ a,
        repeats,
    )


def local_row(m: int, n: int, rank: int, repeats: int, generator: torch.Generator) -> BenchRow:
    """Local delta s·(B_1 A_1 − B_0 A_0) between two nearby checkpoints."""
    b_old, a_old = random_lora(m, n, rank, generator)
    step_b, step_a = random_lora(m, n, rank, generator)
    b_new = b_old + LOCAL_STEP_SCALE * step_b
    a_new = a_old + LOCAL_STEP_SCALE * step_a
    scale = lora_scale(rank)
    new, old = adapter(b_new, a_new, scale), adapter(b_old, a_old, scale)
    return compare(
        (m, n),
        rank,
        "local",
        lambda: factored_triplets(*difference(new, old, MODULE), TRIPLETS_PER_MODULE),
        lambda: scale * (b_new @ a_new - b_old @ a_old),
        repeats,
    )


def timing_table(quick: bool, repeats: int) -> list[str]:
    """Run the timing cases and format them as a markdown table."""
    generator = torch.Generator().manual_seed(0)
    cases = QUICK_CASES if quick else FULL_CASES
    rows = [global_row(m, n, rank, repeats, generator) for m, n, rank in cases]
    rows.append(local_row(*LOCAL_CASE, repeats, generator))
    header = [
        "| shape | r | kind | factored ms | dense s | speedup × "
        r"| max \|Δσ\|/σ1 | max \|Δu\| | max \|Δv\| |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return header + [row.markdown() for row in rows]


def snapshot_bytes(m: int, n: int) -> int:
    """Bytes of one module's snapshot: k triplets (u, σ, v) plus scalars, for every kind."""
    per_kind = FLOAT32_BYTES * (TRIPLETS_PER_MODULE * (m + n + 1) + SNAPSHOT_SCALARS_PER_MODULE)
    return per_kind * len(SNAPSHOT_KINDS)


def storage_table() -> list[str]:
    """Bytes per trajectory snapshot vs a merged float32 Qwen2.5-1.5B-like model."""
    lines = [
        f"| matrix | shape | count | snapshot bytes (k={TRIPLETS_PER_MODULE}, "
        f"{'/'.join(SNAPSHOT_KINDS)}) | merged fp32 bytes |",
        "|---|---|---|---|---|",
    ]
    total_snapshot = 0
    total_merged = 0
    for name, m, n in QWEN_LAYER_MATRICES:
        snapshot = QWEN_LAYERS * snapshot_bytes(m, n)
        merged = QWEN_LAYERS * FLOAT32_BYTES * m * n
        total_snapshot += snapshot
        total_merged += merged
        lines.append(f"| {name} | {m}×{n} | {QWEN_LAYERS} | {snapshot:,} | {merged:,} |")
    name, m, n = QWEN_EMBEDDING
    embedding = FLOAT32_BYTES * m * n
    total_merged += embedding
    lines.append(f"| {name} | {m}×{n} | 1 | — (not LoRA-adapted) | {embedding:,} |")
    lines.append(
        f"| **total** | | {QWEN_LAYERS * len(QWEN_LAYER_MATRICES)} modules "
        f"| {total_snapshot:,} ({total_snapshot / 2**20:.2f} MiB) "
        f"| {total_merged:,} ({total_merged / 2**30:.2f} GiB) |"
    )
    lines.append("")
    lines.append(f"merged / snapshot = {total_merged / total_snapshot:,.0f}×")
    return lines


def main() -> None:
    """Parse arguments, run both tables and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 4096×4096, r=16 global and local cases")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the factored path (median)")
    arguments = parser.parse_args()
    if arguments.repeats < 1:
        parser.error("--repeats must be at least 1")

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"k={TRIPLETS_PER_MODULE}, factored: median of {arguments.repeats}, dense: 1 run "
        "(merge + float32 torch.linalg.svd)\n"
    )
    print("\n".join(timing_table(arguments.quick, arguments.repeats)))
    print()
    print("\n".join(storage_table()))


if __name__ == "__main__":
    main()
