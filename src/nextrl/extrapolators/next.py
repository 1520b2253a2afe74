"""NExt: the published nonlinear predictor of rank-1 update trajectories (arXiv 2604.11446 §3 steps 3–5,
docs/method.md, "The predictor").

Training pairs. For every LoRA module and every snapshot step t that has a target (t + H ≤ T), the inputs are the
top singular triplets (k = 0) of the global delta G_t = W_t − W_base and of the local delta L_t = W_t − W_{t−Δ}; the
output is the top triplet of the target Y_t = W_{t+H} − W_t (:mod:`nextrl.lowrank.trajectory_table`).

Architecture (the public code's ``MatrixPredict``). One network per group of same-shaped vectors: all u's of length
m share one (group ``u_<m>``), all v's of length n share one (``v_<n>``), all σ's share one (``sigma``, d = 1). Each
network is a global branch and an identical local branch, each

    Linear(d, h) → Linear(h, d) → ReLU → Linear(d, h) → Linear(h, d)      (no activation between paired Linears)

and a combiner on cat(global_out, local_out):

    Linear(2d, h) → Linear(h, 2d) → ReLU → Linear(2d, h) → Linear(h, d),       h = ``hidden`` (paper: 256).

For σ (d = 1) each branch narrows to a single ReLU unit; when that unit is inactive for every input at
initialisation, no gradient reaches the branch and it passes no information (seen on the synthetic trajectories of
the tests, where σ̂ of ``next_global`` and ``next_local`` then coincide). This is the published architecture's own
behaviour and is kept.

Training. L1 loss summed over every entry of the group's outputs, divided by the number of checkpoints (distinct
training steps); full batch, one AdamW step per epoch (``lr``, ``weight_decay``), learning rate cosine-annealed to
``lr_min`` over ``epochs`` (paper: 2e-5 → 2e-6, weight decay 0.01, 1000 epochs). AdamW is torch's fused kernel: the
same update rule as the default one, a third faster on the CPU for these networks (300 epochs on a default
trajectory: 11.9 s → 8.0 s), equal to it up to float rounding.

Prediction (§3 step 5). The last snapshot's (G_T, L_T) triplets go in; û and v̂ are renormalised to unit length and
σ̂ is used raw, not clamped: a negative σ̂ predicts the reversed direction and is stored as (−û, |σ̂|, v̂). The
prediction is ΔŴ = σ̂ û v̂ᵀ per module (rank 1); candidates are W_T + α·ΔŴ. A zero-length û or v̂ gives a non-finite
prediction, which :meth:`ModuleDelta.is_finite` reports.

Deviations from the public code:

(a) σ scaling (option ``sigma_scaling``, on by default): σ inputs and targets are divided by the module's mean global
    σ over the training steps and the output is multiplied back. σ spans orders of magnitude across modules, and
    with raw σ the shared σ network collapsed to a near-constant output on our runs (docs/method.md, "The predictor").
    ``sigma_scaling: false`` is the faithful raw σ.
(b) Seeds: each group's network is initialised under ``torch.manual_seed(seed + crc32(group name))`` inside a forked
    RNG, so a fit is reproducible and independent of which other groups exist; the public code sets no seed.

Ablations (docs/method.md, "The predictor", "without the global input" / "without the local input"): ``next_global``
keeps only the global branch, ``next_local`` only the local branch, and the combiner then takes d inputs: Linear(d, h) →
Linear(h, 2d) → ReLU → Linear(2d, h) → Linear(h, d). The paper publishes no ablation code; this construction is ours.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nextrl.extrapolators.base import ExtrapolatorError, parse_options, restore, write_options
from nextrl.lowrank.module_delta import ModuleDelta
from nextrl.lowrank.trajectory_table import last_step, top_triplets, validate_trajectory
from nextrl.runtime import torch_device

WEIGHTS_FILE = "networks.safetensors"
BRANCHES = ("global", "local")
ROLES = ("u", "sigma", "v")


@dataclass(frozen=True)
class NextOptions:
    """NExt's hyperparameters; the defaults are the paper's (hidden 256, AdamW 2e-5 cosine to 2e-6, 1000 epochs)."""

    hidden: int = 256
    epochs: int = 1000
    lr: float = 2e-5
    lr_min: float = 2e-6
    weight_decay: float = 0.01
    sigma_scaling: bool = True
    device: Literal["cpu", "cuda"] = "cpu"


@dataclass(frozen=True)
class ModuleInfo:
    """What a fitted predictor remembers per module: its shape (m out, n in) and the divisor of its σ's."""

    m: int
    n: int
    sigma_scale: float

    def group(self, role: str) -> str:
        return group_name(role, {"u": self.m, "v": self.n, "sigma": 1}[role])


def group_name(role: str, dim: int) -> str:
    """``u_<m>``, ``v_<n>`` or ``sigma``: the network that predicts this role's vectors of length ``dim``."""
    return "sigma" if role == "sigma" else f"{role}_{dim}"


def paired_mlp(dim_in: int, hidden: int, middle: int, dim_out: int) -> nn.Sequential:
    """Linear(dim_in, h) → Linear(h, middle) → ReLU → Linear(middle, h) → Linear(h, dim_out) (public code's block)."""
    return nn.Sequential(
        nn.Linear(dim_in, hidden),
        nn.Linear(hidden, middle),
        nn.ReLU(),
        nn.Linear(middle, hidden),
        nn.Linear(hidden, dim_out),
    )


class TripletNetwork(nn.Module):
    """One group's network: a branch per input kind (global, local) and a combiner on their concatenation."""

    def __init__(self, dim: int, hidden: int, branches: tuple[str, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleDict({kind: paired_mlp(dim, hidden, dim, dim) for kind in branches})
        self.combiner = paired_mlp(dim * len(branches), hidden, 2 * dim, dim)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.combiner(torch.cat([branch(inputs[kind]) for kind, branch in self.branches.items()], dim=-1))


def group_loss(prediction: torch.Tensor, target: torch.Tensor, checkpoints: int) -> torch.Tensor:
    """L1 summed over every entry of the group, divided by the number of checkpoints (the public code's loss)."""
    return (prediction - target).abs().sum() / checkpoints


def seeded_network(name: str, dim: int, hidden: int, branches: tuple[str, ...], seed: int) -> TripletNetwork:
    """A group's freshly initialised network under seed + crc32(name), leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + zlib.crc32(name.encode()))
        return TripletNetwork(dim, hidden, branches)


def rows_at(rows: pd.DataFrame, index: pd.MultiIndex, kind: str) -> pd.DataFrame:
    """``rows`` at the (module, step) pairs of ``index``; ExtrapolatorError naming a pair without a ``kind`` triplet."""
    absent = index.difference(rows.index)
    if len(absent):
        raise ExtrapolatorError(f"no {kind} triplet k=0 for (module, step) {absent[0]}, needed as a NExt input")
    return rows.loc[index]


def features(rows: pd.DataFrame, role: str, sigma_scales: Mapping[str, float]) -> torch.Tensor:
    """(N, d) float32 vectors of one role; σ as (N, 1), divided by its module's scale."""
    if role == "sigma":
        modules = rows.index.get_level_values("module")
        divisors = np.array([sigma_scales[module] for module in modules], dtype=np.float64)
        return torch.from_numpy((rows["sigma"].to_numpy(np.float64) / divisors)[:, None].astype(np.float32))
    return torch.from_numpy(np.stack(rows[role].to_numpy()).astype(np.float32))


def module_infos(global_rows: pd.DataFrame, sigma_scaling: bool) -> dict[str, ModuleInfo]:
    """Shape and σ scale (mean global σ over the training steps, or 1 without scaling) of every module."""
    infos = {}
    for module, rows in global_rows.groupby(level="module", sort=True):
        scale = float(rows["sigma"].mean()) if sigma_scaling else 1.0
        if not scale > 0:
            raise ExtrapolatorError(
                f"module {module!r}: mean global σ over the training steps is {scale}; σ scaling needs it > 0 "
                "(a module that never moved cannot be extrapolated; set sigma_scaling: false to skip the scaling)"
            )
        first = rows.iloc[0]
        infos[str(module)] = ModuleInfo(m=len(first["u"]), n=len(first["v"]), sigma_scale=scale)
    return infos


def rows_by_group(rows: pd.DataFrame, infos: Mapping[str, ModuleInfo]) -> dict[tuple[str, str], pd.MultiIndex]:
    """The (module, step) rows each (role, group) network sees, e.g. ("u", "u_16") → every module with m = 16."""
    modules = rows.index.get_level_values("module")
    grouped: dict[tuple[str, str], pd.MultiIndex] = {}
    for role in ROLES:
        names = np.array([infos[module].group(role) for module in modules])
        for name in sorted(set(names)):
            grouped[(role, str(name))] = rows.index[names == name]
    return grouped


def rank1_delta(u: np.ndarray, sigma: float, v: np.ndarray) -> ModuleDelta:
    """σ û v̂ᵀ from unit û, v̂ and a raw σ: a negative σ is stored as (−û, |σ|, v̂), the same matrix."""
    return ModuleDelta(u=u[:, None], sigma=np.ones(1, np.float32), v=v[:, None]).scaled(sigma)


class Next:
    """``next``: NExt's grouped predictor with a global and a local branch (module docstring)."""

    name: ClassVar[str] = "next"
    Options: ClassVar[type] = NextOptions
    requires_evaluations: ClassVar[bool] = False
    branches: ClassVar[tuple[str, ...]] = BRANCHES

    def __init__(self, options: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        self.options: NextOptions = parse_options(NextOptions, options, self.name)
        self._check_ranges()
        self.seed = seed
        self.networks: dict[str, TripletNetwork] = {}
        self.modules: dict[str, ModuleInfo] = {}

    def _check_ranges(self) -> None:
        options = self.options
        expectations = {
            "hidden": (options.hidden >= 1, "≥ 1"),
            "epochs": (options.epochs >= 1, "≥ 1"),
            "lr": (options.lr > 0, "> 0"),
            "lr_min": (0 <= options.lr_min <= options.lr, f"in [0, lr = {options.lr}]"),
            "weight_decay": (options.weight_decay >= 0, "≥ 0"),
        }
        for key, (valid, expectation) in expectations.items():
            if not valid:
                raise ExtrapolatorError(
                    f"extrapolators.{self.name}.{key}: must be {expectation}, got {getattr(options, key)!r}"
                )

    def fit(self, trajectory: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
        """Train one network per group on every (module, t) with a target; ``evaluations`` is not used.

        Returns the fit log: one row per (epoch, group) with the loss before that epoch's step and the lr it used.
        """
        validate_trajectory(trajectory)
        target = top_triplets(trajectory, "target")
        global_rows = rows_at(top_triplets(trajectory, "global"), target.index, "global")
        inputs = {kind: rows_at(top_triplets(trajectory, kind), target.index, kind) for kind in self.branches}
        self.modules = module_infos(global_rows, self.options.sigma_scaling)
        checkpoints = target.index.get_level_values("step").nunique()
        device = torch_device(self.options.device, f"extrapolators.{self.name}.device")
        scales = {module: info.sigma_scale for module, info in self.modules.items()}
        self.networks, log = {}, []
        for (role, name), index in rows_by_group(target, self.modules).items():
            group_inputs = {kind: features(rows.loc[index], role, scales).to(device) for kind, rows in inputs.items()}
            group_target = features(target.loc[index], role, scales).to(device)
            network, history = self._train(name, group_inputs, group_target, checkpoints, device)
            self.networks[name] = network
            log.extend((epoch, name, loss, lr) for epoch, loss, lr in history)
        return pd.DataFrame(log, columns=["epoch", "group", "loss", "lr"])

    def _train(
        self,
        name: str,
        inputs: Mapping[str, torch.Tensor],
        target: torch.Tensor,
        checkpoints: int,
        device: torch.device,
    ) -> tuple[TripletNetwork, list[tuple[int, float, float]]]:
        """Full-batch AdamW with cosine annealing; returns the network and (epoch, loss, lr) per epoch."""
        options = self.options
        network = seeded_network(name, target.shape[1], options.hidden, self.branches, self.seed).to(device)
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=options.lr, weight_decay=options.weight_decay, fused=True
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.epochs, eta_min=options.lr_min)
        history = []
        for epoch in range(options.epochs):
            optimizer.zero_grad()
            loss = group_loss(network(inputs), target, checkpoints)
            loss.backward()
            history.append((epoch, loss.item(), optimizer.param_groups[0]["lr"]))
            optimizer.step()
            schedule.step()
        return network.eval(), history

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        """Rank-1 ΔŴ = σ̂ û v̂ᵀ per module from its (G_T, L_T) triplets at the last snapshot T (§3 step 5)."""
        if not self.networks:
            raise ExtrapolatorError(f"{self.name}: predict called before fit (or load)")
        validate_trajectory(trajectory, require_targets=False)
        global_rows = top_triplets(trajectory, "global")
        modules = sorted(global_rows.index.get_level_values("module").unique())
        index = pd.MultiIndex.from_product([modules, [last_step(trajectory)]], names=["module", "step"])
        last_global = rows_at(global_rows, index, "global")
        self._check_modules(last_global)
        inputs = {kind: rows_at(top_triplets(trajectory, kind), index, kind) for kind in self.branches}
        scales = {module: info.sigma_scale for module, info in self.modules.items()}
        predicted: dict[str, dict[str, np.ndarray]] = {module: {} for module in modules}
        for (role, name), index in rows_by_group(last_global, self.modules).items():
            network = self.networks[name]
            device = next(network.parameters()).device
            with torch.no_grad():
                output = network(
                    {kind: features(rows.loc[index], role, scales).to(device) for kind, rows in inputs.items()}
                )
            if role != "sigma":
                output = output / output.norm(dim=1, keepdim=True)
            for module, vector in zip(index.get_level_values("module"), output.cpu().numpy(), strict=True):
                predicted[module][role] = vector
        return {
            module: rank1_delta(parts["u"], float(parts["sigma"][0]) * self.modules[module].sigma_scale, parts["v"])
            for module, parts in predicted.items()
        }

    def _check_modules(self, last: pd.DataFrame) -> None:
        """Every module to predict was fitted, with the same shape."""
        for (module, _), row in last.iterrows():
            info = self.modules.get(module)
            if info is None:
                raise ExtrapolatorError(f"{self.name}: module {module!r} was not in the trajectory it was fitted on")
            if (len(row["u"]), len(row["v"])) != (info.m, info.n):
                raise ExtrapolatorError(
                    f"{self.name}: module {module!r} has shape {len(row['u'])}×{len(row['v'])}, "
                    f"fitted as {info.m}×{info.n}"
                )

    def save(self, directory: Path) -> None:
        """``networks.safetensors`` (keys ``<group>.<parameter>``), options.json (groups, module shapes, σ scales)."""
        if not self.networks:
            raise ExtrapolatorError(f"{self.name}: save called before fit")
        write_options(
            directory,
            self,
            groups={name: network.combiner[-1].out_features for name, network in self.networks.items()},
            modules={module: dataclasses.asdict(info) for module, info in self.modules.items()},
        )
        tensors = {
            f"{name}.{parameter}": tensor.detach().cpu().contiguous()
            for name, network in self.networks.items()
            for parameter, tensor in network.state_dict().items()
        }
        save_file(tensors, directory / WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Rebuild a predictor written by ``save``, its networks on the CPU (``device`` is where the predictor
        trains; the extrapolate stage is a CPU job); it predicts identically to a CPU-fitted one."""
        directory = Path(directory)
        predictor, manifest = restore(cls, directory)
        tensors = load_file(directory / WEIGHTS_FILE)
        for name, dim in manifest["groups"].items():
            network = TripletNetwork(dim, predictor.options.hidden, cls.branches)
            prefix = f"{name}."
            network.load_state_dict(
                {key.removeprefix(prefix): t for key, t in tensors.items() if key.startswith(prefix)}
            )
            predictor.networks[name] = network.eval()
        predictor.modules = {module: ModuleInfo(**info) for module, info in manifest["modules"].items()}
        return predictor


class NextGlobal(Next):
    """``next_global``: the paper's ablation "without the local input" — only the global branch (our construction)."""

    name: ClassVar[str] = "next_global"
    branches: ClassVar[tuple[str, ...]] = ("global",)


class NextLocal(Next):
    """``next_local``: the paper's ablation "without the global input" — only the local branch (our construction)."""

    name: ClassVar[str] = "next_local"
    branches: ClassVar[tuple[str, ...]] = ("local",)
