"""The paper's two motivating findings (NExt arXiv 2604.11446 §2, docs/method.md, "The paper's §2 findings, checked on
every run") measured on trajectory tables.

* **Rank-1 dominance** (paper Fig. 2): E1 = σ1/Σσ of each module's global delta G_t (the trajectory's
  ``energy_ratio``), summarised per module type (the last part of the module name: ``q_proj``, …) and RL step.
* **Nonlinearity**: per module, a least-squares line in t through the rank-1 global deltas M_t = σ_t u_t v_tᵀ of the
  first n snapshots predicts the next m; R² = 1 − Σ_held ‖M_t − M̂_t‖²_F / Σ_held ‖M_t − M̄_held‖²_F, pooled over every
  entry (scikit-learn's ``r2_score(..., multioutput="variance_weighted")`` on the flattened matrices). The paper fits
  10 checkpoints, predicts 5 and reports R² < 0 for more than half of the matrices; a round with 15 or more snapshots
  uses its first 15, one with fewer predicts about a third of them (:func:`fit_split`). Computed exactly from the
  Gram matrix of the rank-1 terms, ⟨M_i, M_j⟩ = σ_i σ_j (u_i·u_j)(v_i·v_j): no dense out×in matrix is formed, so a
  module costs O(T²·(out + in)) for T snapshots instead of O(T·out·in).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAPER_SPLIT = (10, 5)
GLOBAL_TOP = [("kind", "==", "global"), ("k", "==", 0)]
"""The only trajectory rows both findings read (a ``pd.read_parquet`` filter): the top triplet of each global delta."""
TRAINING_WORDS = {"lora": "LoRA", "full": "full-parameter"}
"""How a training mode (``rl.mode``) is named in findings and figures."""
LINEARITY_COLUMNS = ("arm", "seed", "round", "module", "module_type", "fit_snapshots", "predicted_snapshots", "r2")


def module_type(module: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj`` → ``q_proj``."""
    return module.rsplit(".", 1)[-1]


def global_top(trajectory: pd.DataFrame) -> pd.DataFrame:
    """The rows GLOBAL_TOP selects, in step order."""
    return trajectory[(trajectory["kind"] == "global") & (trajectory["k"] == 0)].sort_values("step")


def energy_table(trajectory: pd.DataFrame) -> pd.DataFrame:
    """E1 of the global delta per (round, step, module_type): mean, min and max over the modules of that type."""
    global_rows = global_top(trajectory)
    grouped = global_rows.assign(module_type=global_rows["module"].map(module_type)).groupby(
        ["round", "step", "module_type"]
    )["energy_ratio"]
    return grouped.agg(e1_mean="mean", e1_min="min", e1_max="max").reset_index()


def fit_split(snapshots: int) -> tuple[int, int] | None:
    """(n fitted, m predicted): the paper's (10, 5) when there are ≥ 15 snapshots, else m = max(2, ⌊snapshots / 3⌋)
    and n = snapshots − m ≥ 2 (about the paper's 2 : 1; 8 snapshots give 6 → 2); None when fewer than 4 snapshots
    allow no held-out R²."""
    if snapshots >= sum(PAPER_SPLIT):
        return PAPER_SPLIT
    predicted = max(2, snapshots // 3)
    return (snapshots - predicted, predicted) if snapshots - predicted >= 2 else None


def splits_used(linearity: pd.DataFrame) -> str:
    """The (fit, predict) snapshot counts of a linearity table in words, e.g. ``fit 6 → predict 2``."""
    pairs = sorted(set(zip(linearity["fit_snapshots"], linearity["predicted_snapshots"], strict=True)))
    return ", ".join(f"fit {fitted} → predict {predicted}" for fitted, predicted in pairs)


def rank1_gram(sigma: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """⟨M_i, M_j⟩_F for M_t = σ_t u_t v_tᵀ (rows of ``u``, ``v`` are the snapshots' vectors)."""
    return np.outer(sigma, sigma) * (u @ u.T) * (v @ v.T)


def linear_fit_r2(steps: np.ndarray, gram: np.ndarray, fitted: int) -> float:
    """Held-out R² of the per-entry least-squares line through the first ``fitted`` snapshots (module docstring).

    The line's prediction at t is a combination of the fitted snapshots, M̂_t = Σ_i c_i(t) M_i with
    c_i(t) = 1/n + (t − t̄)(t_i − t̄)/Σ_j (t_j − t̄)², so both sums of squares follow from the Gram matrix."""
    fit_steps, held = steps[:fitted].astype(float), np.arange(fitted, len(steps))
    centred = fit_steps - fit_steps.mean()
    weights = 1 / fitted + np.outer(steps[held] - fit_steps.mean(), centred) / (centred @ centred)  # (m, n)
    fit_gram = gram[:fitted, :fitted]
    cross = gram[np.ix_(held, np.arange(fitted))]
    residual = (
        gram[held, held]
        - 2 * np.einsum("ti,ti->t", weights, cross)
        + np.einsum("ti,ij,tj->t", weights, fit_gram, weights)
    )
    held_gram = gram[np.ix_(held, held)]
    total = np.trace(held_gram) - held_gram.sum() / len(held)
    return float(1 - residual.sum() / total)


def linearity_table(trajectory: pd.DataFrame, arm: str, seed: int) -> pd.DataFrame:
    """R² per (round, module) of one run's trajectory (LINEARITY_COLUMNS); rounds too short for a split are left out."""
    global_rows = global_top(trajectory)
    rows = []
    for (round_index, module), snapshots in global_rows.groupby(["round", "module"]):
        split = fit_split(len(snapshots))
        if split is None:
            continue
        used = snapshots.iloc[: sum(split)]
        gram = rank1_gram(
            used["sigma"].to_numpy(float), np.stack(used["u"]).astype(float), np.stack(used["v"]).astype(float)
        )
        rows.append({"arm": arm, "seed": seed, "round": round_index, "module": module,
                     "module_type": module_type(module), "fit_snapshots": split[0], "predicted_snapshots": split[1],
                     "r2": linear_fit_r2(used["step"].to_numpy(), gram, split[0])})  # fmt: skip
    return pd.DataFrame(rows, columns=list(LINEARITY_COLUMNS))
