"""Figures drawn from the comparison tables (matplotlib, Agg backend; PNG and PDF)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def same_as_none(curves: pd.DataFrame, arm: str) -> bool:
    """Whether ``arm``'s validation curve equals plain RL's in every seed (every jump kept α = 0, carried over)."""
    columns = ["seed", "step", "accuracy"]
    plain, other = (curves.loc[curves["arm"] == name, columns].reset_index(drop=True) for name in ("none", arm))
    return arm != "none" and len(plain) > 0 and plain.equals(other)


def plot_curves(curves: pd.DataFrame, base_accuracy: float, path_stem: Path) -> None:
    """Validation accuracy vs RL steps: thin lines per seed, a thick mean per arm, dotted lines at jumps that moved
    the weights; an arm whose curve equals ``none``'s in every seed says so in the legend (the lines coincide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.8))
    arms = curves["arm"].nunique()
    colours = plt.get_cmap("tab10" if arms <= 10 else "tab20").colors  # one colour per arm
    for index, (arm, arm_curves) in enumerate(curves.groupby("arm", sort=False)):
        colour = colours[index % len(colours)]
        for _, seed_curve in arm_curves.groupby("seed"):
            axis.plot(seed_curve["step"], seed_curve["accuracy"], color=colour, alpha=0.3, linewidth=1)
        ordered = arm_curves.assign(order=arm_curves["point"].eq("start").astype(int))
        mean = ordered.groupby(["step", "order"], as_index=False)["accuracy"].mean().sort_values(["step", "order"])
        axis.plot(
            mean["step"],
            mean["accuracy"],
            color=colour,
            linewidth=2.5,
            label=f"{arm} (mean of {arm_curves['seed'].nunique()} seeds)"
            + (": identical to none" if same_as_none(curves, arm) else ""),
        )
        jumps = arm_curves[(arm_curves["point"] == "start") & (arm_curves["round"] > 0)]["step"].unique()
        for step in jumps:
            axis.axvline(step, color=colour, linestyle=":", linewidth=1)
    axis.axhline(base_accuracy, color="grey", linestyle="--", linewidth=1, label="base model")
    axis.set_xlabel("RL steps consumed")
    axis.set_ylabel("validation accuracy")
    axis.set_title("Held-out accuracy vs RL steps (thin: seeds; dotted: jumps)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path_stem.with_suffix(".png"), dpi=130)
    figure.savefig(path_stem.with_suffix(".pdf"))
    plt.close(figure)
