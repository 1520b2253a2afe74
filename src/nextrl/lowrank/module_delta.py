"""A weight delta of one module in SVD form, rank k: ΔW = Σ_i σ_i u_i v_iᵀ — what an extrapolator predicts, what the
trajectory table's triplets read back as, and what :mod:`nextrl.lowrank.jumps` applies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nextrl.lowrank.svd import factored_triplets


# eq=False: the generated __eq__/__hash__ would compare numpy arrays, which has no single truth value.
@dataclass(frozen=True, eq=False)
class ModuleDelta:
    """A predicted weight delta for one module, rank k: Σ_i sigma[i] u[:, i] v[:, i]ᵀ (u, v unit columns)."""

    u: np.ndarray  # (m, k) float32
    sigma: np.ndarray  # (k,) float32
    v: np.ndarray  # (n, k) float32

    def __post_init__(self) -> None:
        if self.u.ndim != 2 or self.v.ndim != 2 or self.sigma.ndim != 1:
            raise ValueError(
                f"ModuleDelta needs u (m, k), sigma (k,), v (n, k); got shapes u {self.u.shape}, "
                f"sigma {self.sigma.shape}, v {self.v.shape}"
            )
        if not self.u.shape[1] == self.sigma.shape[0] == self.v.shape[1]:
            raise ValueError(f"ModuleDelta rank mismatch: u {self.u.shape}, sigma {self.sigma.shape}, v {self.v.shape}")

    @classmethod
    def from_factors(cls, left: np.ndarray, right: np.ndarray) -> ModuleDelta:
        """The exact SVD of ``left @ right`` (m×q times q×n) from the factors, every non-zero triplet kept."""
        left_t, right_t = (
            torch.from_numpy(np.asarray(left, np.float32)),
            torch.from_numpy(np.asarray(right, np.float32)),
        )
        found = factored_triplets(left_t, right_t, max(1, left_t.shape[1]))
        rank = max(1, len(found.spectrum))
        return cls(found.u[:, :rank].numpy(), found.sigma[:rank].numpy(), found.v[:, :rank].numpy())

    def scaled(self, factor: float) -> ModuleDelta:
        """factor · ΔŴ; a negative factor flips u (σ stays ≥ 0)."""
        sign = np.float32(-1.0 if factor < 0 else 1.0)
        # in float64 whatever the factor's type, so a numpy and a Python scalar give the same bits
        return ModuleDelta(
            sign * self.u, (abs(float(factor)) * self.sigma.astype(np.float64)).astype(np.float32), self.v
        )

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(σ·u, vᵀ) as fp32 tensors: ΔŴ = left @ right, the form :mod:`nextrl.lowrank.jumps` applies."""
        left = torch.from_numpy(np.ascontiguousarray(self.u * self.sigma, dtype=np.float32))
        return left, torch.from_numpy(np.ascontiguousarray(self.v.T, dtype=np.float32))

    def dense(self) -> np.ndarray:
        """The (m, n) matrix (for tests and small held-out comparisons)."""
        return (self.u * self.sigma) @ self.v.T

    def is_finite(self) -> bool:
        """True when every entry of u, sigma and v is finite (a NaN/inf prediction must not be written)."""
        return bool(np.isfinite(self.u).all() and np.isfinite(self.sigma).all() and np.isfinite(self.v).all())
