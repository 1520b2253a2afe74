"""The figures (docs/artifacts.md, "Figures"; issue 9), each drawn from one table the summary stage wrote — no model is
loaded.

Every ``plot_*`` takes that table and a path stem and writes ``<stem>.png`` and ``<stem>.pdf`` (matplotlib, Agg).
:data:`FIGURES` maps each figure's name to the summary table it reads and its function; the ``figure`` stage and the
one ``figure`` rule of rules/figures.smk are driven by it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from nextrl.analysis.findings import TRAINING_WORDS, splits_used


def seeds_label(count: int) -> str:
    return f"{count} seed{'s' if count != 1 else ''}"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path_stem: Path) -> None:
    figure.savefig(path_stem.with_suffix(".png"), dpi=130, bbox_inches="tight")
    figure.savefig(path_stem.with_suffix(".pdf"), bbox_inches="tight")
    _pyplot().close(figure)


def _panels(count: int, width: float = 4.2, height: float = 3.4) -> tuple[Any, list[Any]]:
    """A grid of ``count`` axes, at most four per row; unused cells are hidden."""
    columns = min(count, 4)
    rows = math.ceil(count / columns)
    figure, axes = _pyplot().subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    flat = list(axes.flat)
    for axis in flat[count:]:
        axis.set_visible(False)
    return figure, flat[:count]


def _colours(names: list[str]) -> dict[str, Any]:
    palette = _pyplot().get_cmap("tab10" if len(names) <= 10 else "tab20").colors
    return {name: palette[index % len(palette)] for index, name in enumerate(names)}


def plot_nothing(message: str, path_stem: Path) -> None:
    """A figure that only says why there is nothing to draw."""
    figure, axis = _pyplot().subplots(figsize=(6, 1.5))
    axis.axis("off")
    axis.text(0.5, 0.5, message, ha="center", va="center")
    _save(figure, path_stem)


def same_as_none(curves: pd.DataFrame, arm: str) -> bool:
    """Whether ``arm``'s validation curve equals plain RL's in every seed (every jump kept α = 0, carried over)."""
    columns = ["seed", "step", "accuracy"]
    plain, other = (curves.loc[curves["arm"] == name, columns].reset_index(drop=True) for name in ("none", arm))
    return arm != "none" and len(plain) > 0 and plain.equals(other)


def _draw_curve(axis: Any, arm_curves: pd.DataFrame, colour: Any, label: str) -> None:
    """Thin lines per seed, a thick mean (a jump's two points at one step kept in order), dotted lines at jumps."""
    for _, seed_curve in arm_curves.groupby("seed"):
        axis.plot(seed_curve["step"], seed_curve["accuracy"], color=colour, alpha=0.3, linewidth=1)
    ordered = arm_curves.assign(order=arm_curves["point"].eq("start").astype(int))
    mean = ordered.groupby(["step", "order"], as_index=False)["accuracy"].mean().sort_values(["step", "order"])
    axis.plot(mean["step"], mean["accuracy"], color=colour, linewidth=2.5, label=label)
    for step in arm_curves.loc[(arm_curves["point"] == "start") & (arm_curves["round"] > 0), "step"].unique():
        axis.axvline(step, color=colour, linestyle=":", linewidth=1)


def plot_curves(curves: pd.DataFrame, path_stem: Path) -> None:
    """Validation accuracy vs RL steps (paper §7 fig. 3): one panel per arm beside ``none``; thin lines per seed,
    thick the mean over seeds, dotted lines at jumps; the dashed line is the base model (step 0)."""
    arms = list(dict.fromkeys(curves["arm"]))
    others = [arm for arm in arms if arm != "none"] or ["none"]
    colours = _colours(arms)
    base_accuracy = float(curves.loc[curves["step"] == 0, "accuracy"].mean())
    figure, axes = _panels(len(others))
    for axis, arm in zip(axes, others, strict=True):
        if arm != "none" and "none" in arms:
            _draw_curve(axis, curves[curves["arm"] == "none"], "grey", "none")
        arm_curves = curves[curves["arm"] == arm]
        identical = " (identical to none)" if same_as_none(curves, arm) else ""
        _draw_curve(axis, arm_curves, colours[arm], f"{arm}{identical}")
        axis.axhline(base_accuracy, color="black", linestyle="--", linewidth=0.8)
        axis.set_title(f"{arm} ({seeds_label(arm_curves['seed'].nunique())})")
        axis.set_xlabel("RL steps consumed")
        axis.set_ylabel("validation accuracy")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    _save(figure, path_stem)


LINE_STYLES = {"lora": "-", "full": "--"}
"""Line style of each training mode (``rl.mode``) in the E1 figure."""


def plot_energy(energy: pd.DataFrame, path_stem: Path) -> None:
    """E1 = σ1/Σσ of the global delta vs RL step per module type (paper Fig. 2), LoRA solid and full-parameter dashed:
    mean over modules and seeds, the band spanning the per-module minimum and maximum."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.2))
    types = sorted(energy["module_type"].unique())
    colours = _colours(types)
    modes = [mode for mode in TRAINING_WORDS if mode in set(energy["training"])]
    for (training, module_type), rows in energy.groupby(["training", "module_type"]):
        by_step = rows.groupby("step")
        mean = by_step["e1_mean"].mean()
        label = module_type if training == modes[0] else None
        axis.plot(mean.index, mean.values, color=colours[module_type], linestyle=LINE_STYLES[training], linewidth=2,
                  label=label)  # fmt: skip
        band = by_step["e1_min"].min(), by_step["e1_max"].max()
        axis.fill_between(mean.index, *band, color=colours[module_type], alpha=0.08)
    for training in modes:
        axis.plot([], [], color="black", linestyle=LINE_STYLES[training], label=TRAINING_WORDS[training])
    axis.set_xlabel("RL step")
    axis.set_ylabel("E1 = σ1 / Σσ of W_t − W_0")
    words = " vs ".join(TRAINING_WORDS[mode] for mode in modes)
    axis.set_title(f"Rank-1 energy of the update, {words} ({seeds_label(energy['seed'].nunique())})")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(figure, path_stem)


R2_FLOOR = -3.0


def plot_linearity(linearity: pd.DataFrame, path_stem: Path) -> None:
    """Held-out R² of a per-module linear fit of the rank-1 global delta (docs/method.md, "The paper's §2 findings,
    checked on every run"): one box per module type and training mode, every module a dot; values below ``R2_FLOOR``
    are drawn at the floor; the title gives n, m and the share below 0 per training mode."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 4.2))
    types = sorted(linearity["module_type"].unique())
    modes = [mode for mode in TRAINING_WORDS if mode in set(linearity["training"])]
    width = 0.8 / len(modes)
    for index, (training, colour) in enumerate(zip(modes, ("tab:blue", "tab:orange"), strict=False)):
        rows = linearity[linearity["training"] == training]
        positions = [t + 1 + (index - (len(modes) - 1) / 2) * width for t in range(len(types))]
        values = [rows.loc[rows["module_type"] == t, "r2"].clip(lower=R2_FLOOR).to_numpy() for t in types]
        axis.boxplot(values, positions=positions, widths=width * 0.8, showfliers=False, manage_ticks=False)
        for position, points in zip(positions, values, strict=True):
            axis.scatter([position] * len(points), points, s=8, alpha=0.4, color=colour)
        axis.scatter([], [], color=colour, label=f"{TRAINING_WORDS[training]}: {(rows['r2'] < 0).mean():.0%} below 0")
    axis.set_xticks(range(1, len(types) + 1), types)
    axis.axhline(0, color="red", linewidth=1, linestyle="--")
    axis.set_title(f"Linear-fit R² per module ({splits_used(linearity)}), {len(linearity)} fits")
    axis.set_ylabel(f"held-out R² (clipped at {R2_FLOOR:g})")
    axis.grid(alpha=0.3, axis="y")
    axis.legend(fontsize="small")
    _save(figure, path_stem)


def _sweep_panels(table: pd.DataFrame, x: str, xlabel: str, ylabel: str, line_label: str) -> tuple[Any, list[Any]]:
    """One panel per arm, one line per round of accuracy against ``x`` (mean over seeds, thick; seeds thin);
    ``line_label`` formats the round's legend entry; rows with ``selected`` true are circled."""
    arms = list(dict.fromkeys(table["arm"]))
    figure, axes = _panels(len(arms))
    rounds = sorted(table["round"].unique())
    colours = _colours([str(r) for r in rounds])
    for axis, arm in zip(axes, arms, strict=True):
        for round_index in rounds:
            rows = table[(table["arm"] == arm) & (table["round"] == round_index)]
            if rows.empty:
                continue
            colour = colours[str(round_index)]
            for _, seed_rows in rows.groupby("seed"):
                axis.plot(seed_rows[x], seed_rows["accuracy"], color=colour, alpha=0.3, linewidth=1)
            mean = rows.groupby(x)["accuracy"].mean()
            axis.plot(mean.index, mean.values, color=colour, linewidth=2.5, label=line_label.format(round_index))
            if "selected" in rows:
                chosen = rows[rows["selected"]]
                axis.scatter(chosen[x], chosen["accuracy"], color=colour, edgecolor="black", zorder=3)
        axis.set_title(arm)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    return figure, axes


def plot_alpha(alpha: pd.DataFrame, path_stem: Path) -> None:
    """Selection-split accuracy vs the extension coefficient α for every jump (paper §7 fig. 4): one panel per arm,
    a line per jump round (mean over seeds; thin: seeds), the chosen α of each seed circled."""
    figure, _ = _sweep_panels(alpha, "alpha", "α", "selection accuracy", "jump after round {}")
    figure.tight_layout()
    _save(figure, path_stem)


def plot_probe(probe: pd.DataFrame, path_stem: Path) -> None:
    """The extrapolability probe (docs/method.md, "The extrapolability probe"): validation accuracy along each round's
    own ray W_start + k·(W_T − W_start), one panel per arm, a line per round (mean over seeds; thin: seeds)."""
    figure, axes = _sweep_panels(probe, "k", "k (1 = where RL got to)", "validation accuracy", "round {}")
    for axis in axes:
        axis.axvline(1, color="black", linestyle="--", linewidth=0.8)
    figure.tight_layout()
    _save(figure, path_stem)


def plot_steps(table: pd.DataFrame, path_stem: Path) -> None:
    """Left: RL steps saved at the end against plain RL's curve of the same seed (:mod:`nextrl.analysis.steps_saved`),
    against ``none`` and against the fastest plain-RL arm (one bar where that is ``none``), mean ± 95 % interval over
    seeds; seeds censored (ending beyond all plain RL reached, or below its start) are counted under the arm's name.
    Right: the wall-clock split per arm — RL chunk jobs vs jump jobs (fit, extrapolate, select, trajectory), seconds
    per seed."""
    plt = _pyplot()
    figure, (saved, clock) = plt.subplots(1, 2, figsize=(12, 0.45 * len(table) + 2))
    positions = range(len(table))
    fastest = table["fastest_plain"].iloc[0]
    bars = [("steps_saved", "against none")] + (
        [("steps_saved_fastest", f"against {fastest}")] if fastest != "none" else []
    )
    for offset, (column, label) in enumerate(bars):
        saved.barh([p + 0.4 * offset for p in positions], table[f"{column}_mean"], height=0.4,
                   xerr=table[f"{column}_ci95"].fillna(0), label=label, capsize=3)  # fmt: skip
    saved.axvline(0, color="black", linewidth=1)
    middle = 0.2 * (len(bars) - 1)  # the bars' centre: one bar, or two side by side
    labels = [arm if censored == "0 above, 0 below" else f"{arm}\ncensored: {censored}"
              for arm, censored in zip(table["arm"], table["censored"], strict=True)]  # fmt: skip
    saved.set_yticks([p + middle for p in positions], labels)
    saved.set_ylim(len(table) - 0.5 + middle, middle - 0.5)  # top to bottom
    saved.set_xlabel("RL steps saved at the end (> 0: ahead of plain RL)")
    saved.legend(fontsize="small")
    saved.grid(alpha=0.3, axis="x")
    clock.barh(list(positions), table["rl_job_seconds"], label="RL chunk jobs")
    clock.barh(list(positions), table["overhead_seconds"].fillna(0), left=table["rl_job_seconds"], label="jump jobs")
    clock.set_yticks(list(positions), table["arm"])
    clock.invert_yaxis()
    clock.set_xlabel("job wall-clock seconds per seed")
    clock.legend(fontsize="small")
    clock.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    _save(figure, path_stem)


FIGURES: dict[str, tuple[str, Callable[[pd.DataFrame, Path], None]]] = {
    "curves": ("curves.parquet", plot_curves),
    "energy": ("energy.parquet", plot_energy),
    "linearity": ("linearity.parquet", plot_linearity),
    "alpha": ("alpha.parquet", plot_alpha),
    "probe": ("probe_points.parquet", plot_probe),
    "steps": ("table.csv", plot_steps),
}
"""Figure name → (the summary table it reads, its plot function)."""
