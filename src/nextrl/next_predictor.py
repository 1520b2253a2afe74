"""NExt's nonlinear predictor of rank-1 weight-update trajectories (arXiv 2604.11446 §3, method.md §3 steps 3–5).

For every LoRA-trained module and snapshot step t with a target, the input is the top singular triplet (u, σ, v) of
the global delta G_t and of the local delta L_t, the output the top triplet of the target Y_t = W_{t+H} − W_t.
As in the public NExt code there is one predictor per group of same-shaped vectors — all u's of length m share one,
all v's of length n share one, all σ's share one — each made of a global encoder, a local encoder and a decoder.

Deviation from the public code: σ spans orders of magnitude across modules, so the σ predictor sees σ divided by a
per-module scale (the module's mean global σ over the training steps) and its output is multiplied back.
"""

from __future__ import annotations

import json
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nextrl.extrapolator import ModuleDelta, validate_trajectory

WEIGHTS_FILE = "predictor.safetensors"
CONFIG_FILE = "predictor.json"
INPUTS = ("both", "global", "local")

GroupKey = tuple[str, int]
"""(role, vector length): ("u", m), ("v", n) or ("sigma", 1)."""


def group_name(key: GroupKey) -> str:
    """Name of a predictor group: "u_<m>", "v_<n>" or "sigma"."""
    role, dim = key
    return "sigma" if role == "sigma" else f"{role}_{dim}"


@dataclass(frozen=True)
class NextOptions:
    """Hyperparameters; defaults are the paper's (NExt §3: hidden 256, AdamW lr 2e-5 cosine to 2e-6, 1000 epochs)."""

    hidden: int = 256
    epochs: int = 1000
    lr: float = 2e-5
    lr_min: float = 2e-6
    weight_decay: float = 0.01
    inputs: str = "both"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("hidden", "epochs", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"option {name!r} must be an integer, got {value!r}")
        for name in ("lr", "lr_min", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
                raise ValueError(f"option {name!r} must be a finite number, got {value!r}")
        if self.hidden < 1 or self.epochs < 1:
            raise ValueError(f"options 'hidden' and 'epochs' must be ≥ 1, got {self.hidden}, {self.epochs}")
        if self.lr <= 0 or self.lr_min < 0 or self.lr_min > self.lr or self.weight_decay < 0:
            raise ValueError(
                f"options need 0 ≤ lr_min ≤ lr, lr > 0, weight_decay ≥ 0; got lr={self.lr}, "
                f"lr_min={self.lr_min}, weight_decay={self.weight_decay}"
            )
        if self.inputs not in INPUTS:
            raise ValueError(f"option 'inputs' must be one of {list(INPUTS)}, got {self.inputs!r}")
        if not isinstance(self.device, str) or not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"option 'device' must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    @classmethod
    def from_dict(cls, options: Mapping[str, object]) -> NextOptions:
        """Options from a config mapping; unknown keys are an error."""
        known = {field.name: field for field in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for extrapolator 'next'; known: {sorted(known)}")
        values = dict(options)
        for name, value in values.items():
            # YAML 1.1 (PyYAML) reads "2e-5" as a string.
            if isinstance(known[name].default, float) and isinstance(value, str):
                try:
                    values[name] = float(value)
                except ValueError:
                    raise ValueError(f"option {name!r} must be a number, got {value!r}") from None
        return cls(**values)

    def resolved_device(self) -> torch.device:
        """The requested device, or the CPU (with a warning) when CUDA is requested but unavailable."""
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(f"device {self.device!r} requested but CUDA is unavailable; using the CPU", stacklevel=2)
            return torch.device("cpu")
        return torch.device(self.device)


class TripletPredictor(nn.Module):
    """One group's predictor (NExt public code): encoders for the global and local inputs, a decoder on their concat.

    encoder_g = Linear(d, h)-ReLU, encoder_l = Linear(d, h)-ReLU, decoder = Linear(2h, h)-ReLU-Linear(h, d).
    The ablations "global"/"local" (NExt §4 ablations) keep only that encoder, and the decoder takes width h.
    """

    def __init__(self, dim: int, hidden: int, inputs: str) -> None:
        super().__init__()
        self.inputs = inputs
        if inputs in ("both", "global"):
            self.encoder_g = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        if inputs in ("both", "local"):
            self.encoder_l = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        width = 2 * hidden if inputs == "both" else hidden
        self.decoder = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, glob: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        features = []
        if self.inputs != "local":
            features.append(self.encoder_g(glob))
        if self.inputs != "global":
            features.append(self.encoder_l(local))
        return self.decoder(torch.cat(features, dim=-1))


@dataclass(frozen=True)
class ModuleInfo:
    """What the predictor remembers per fitted module: its shape (m out, n in) and its σ scale."""

    m: int
    n: int
    sigma_scale: float


def l1_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 summed over a sample's entries, averaged over samples (NExt public code sums over entries)."""
    return (prediction - target).abs().sum(dim=1).mean()


def _top_triplets(trajectory: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The k = 0 triplets of one kind, indexed by (module, step)."""
    selected = (trajectory["kind"] == kind) & (trajectory["k"] == 0)
    rows = trajectory.loc[selected, ["module", "step", "sigma", "u", "v"]].set_index(["module", "step"]).sort_index()
    duplicated = rows.index[rows.index.duplicated()]
    if len(duplicated):
        raise ValueError(f"{kind} triplet k=0 appears more than once for (module, step) {duplicated[0]}")
    return rows


def _split_by_group(rows: pd.DataFrame) -> dict[GroupKey, pd.MultiIndex]:
    """The (module, step) rows feeding each group: all rows for σ, rows with u (v) of length d for ("u", d)."""
    groups: dict[GroupKey, pd.MultiIndex] = {("sigma", 1): rows.index}
    for role in ("u", "v"):
        lengths = rows[role].map(len)
        for dim, part in lengths.groupby(lengths):
            groups[(role, int(dim))] = part.index
    return dict(sorted(groups.items()))


def _features(rows: pd.DataFrame, role: str, scales: Mapping[str, float]) -> torch.Tensor:
    """(N, d) float32 inputs/outputs of one group; σ is divided by its module's scale."""
    if role == "sigma":
        modules = rows.index.get_level_values("module")
        scaled = rows["sigma"].to_numpy(np.float64) / np.array([scales[m] for m in modules], dtype=np.float64)
        return torch.from_numpy(scaled[:, None].astype(np.float32))
    return torch.from_numpy(np.stack(rows[role].to_numpy()).astype(np.float32))


def _select(rows: pd.DataFrame, index: pd.MultiIndex, kind: str) -> pd.DataFrame:
    """`rows` at `index`; ValueError naming a (module, step) that has no `kind` triplet."""
    absent = index.difference(rows.index)
    if len(absent):
        raise ValueError(f"no {kind} triplet k=0 for (module, step) {absent[0]} (needed as predictor input)")
    return rows.loc[index]


class NextPredictor:
    """The `next` extrapolator: NExt's grouped MLP predictor of the rank-1 update (arXiv 2604.11446 §3)."""

    name = "next"

    def __init__(self, options: Mapping[str, object] | None = None) -> None:
        self.options = NextOptions.from_dict(options or {})
        self.networks: dict[str, TripletPredictor] = {}
        self.group_keys: dict[str, GroupKey] = {}
        self.modules: dict[str, ModuleInfo] = {}

    def fit(self, trajectory: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
        """Train one predictor per group on all (module, t) pairs with a target; `evaluations` is not used.

        Full-batch AdamW with cosine decay from lr to lr_min over `epochs`; seeded, deterministic on CPU.
        Returns the fit log: columns epoch, group, loss (before that epoch's step), lr (used in that step).
        """
        validate_trajectory(trajectory)
        target = _top_triplets(trajectory, "target")
        glob = _select(_top_triplets(trajectory, "global"), target.index, "global")
        local = _select(_top_triplets(trajectory, "local"), target.index, "local")

        scales = glob["sigma"].groupby(level="module").mean()
        for module, scale in scales.items():
            if not scale > 0:
                raise ValueError(f"module {module!r}: mean global sigma over the training steps is {scale}, not > 0")
        first = glob.groupby(level="module").head(1).droplevel("step")
        self.modules = {
            module: ModuleInfo(m=len(row["u"]), n=len(row["v"]), sigma_scale=float(scales[module]))
            for module, row in first.iterrows()
        }

        device = self.options.resolved_device()
        sigma_scales = self._sigma_scales()
        self.networks, self.group_keys, log = {}, {}, []
        for key, index in _split_by_group(glob).items():
            name = group_name(key)
            role, dim = key
            inputs = [_features(rows.loc[index], role, sigma_scales).to(device) for rows in (glob, local, target)]
            network, history = self._train(name, dim, *inputs, device=device)
            self.networks[name], self.group_keys[name] = network, key
            log.extend((epoch, name, loss, lr) for epoch, loss, lr in history)
        return pd.DataFrame(log, columns=["epoch", "group", "loss", "lr"])

    def _train(
        self, name: str, dim: int, glob: torch.Tensor, local: torch.Tensor, target: torch.Tensor, device: torch.device
    ) -> tuple[TripletPredictor, list[tuple[int, float, float]]]:
        """Train one group's network; returns it and (epoch, loss, lr) per epoch."""
        options = self.options
        with torch.random.fork_rng(devices=[]):
            # Seeded per group, so one group's initialisation does not depend on which other groups exist.
            torch.manual_seed(options.seed + zlib.crc32(name.encode()))
            network = TripletPredictor(dim, options.hidden, options.inputs).to(device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.epochs, eta_min=options.lr_min)
        history = []
        for epoch in range(options.epochs):
            optimizer.zero_grad()
            loss = l1_loss(network(glob, local), target)
            loss.backward()
            history.append((epoch, loss.item(), optimizer.param_groups[0]["lr"]))
            optimizer.step()
            schedule.step()
        return network.eval(), history

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        """Rank-1 ΔŴ = σ̂ û v̂ᵀ per module from the global and local triplets at its last snapshot step.

        û and v̂ are renormalised to unit length and σ̂ = max(σ̂, 0) · scale (NExt §3 step 5). A non-finite
        prediction is still returned; ModuleDelta.is_finite reports it.
        """
        if not self.networks:
            raise ValueError("NextPredictor.predict called before fit (or load)")
        validate_trajectory(trajectory, require_targets=False)
        glob = _top_triplets(trajectory, "global")
        last_steps = glob.reset_index().groupby("module")["step"].max()
        index = pd.MultiIndex.from_arrays([last_steps.index, last_steps.to_numpy()], names=["module", "step"])
        glob = glob.loc[index]
        local = _select(_top_triplets(trajectory, "local"), index, "local")
        self._check_modules(glob)

        device = next(iter(self.networks.values())).decoder[0].weight.device
        sigma_scales = self._sigma_scales()
        predicted: dict[str, dict[str, np.ndarray]] = {module: {} for module in last_steps.index}
        for key, rows in _split_by_group(glob).items():
            role, _ = key
            network = self.networks[group_name(key)]
            with torch.no_grad():
                output = network(*(_features(r.loc[rows], role, sigma_scales).to(device) for r in (glob, local)))
            if role == "sigma":
                output = output.clamp(min=0)
            else:
                output = output / output.norm(dim=1, keepdim=True)
            for module, vector in zip(rows.get_level_values("module"), output.cpu().numpy()):
                predicted[module][role] = vector
        return {
            module: ModuleDelta(
                u=parts["u"][:, None],
                sigma=(parts["sigma"] * self.modules[module].sigma_scale).astype(np.float32),
                v=parts["v"][:, None],
            )
            for module, parts in predicted.items()
        }

    def _check_modules(self, last: pd.DataFrame) -> None:
        """Every module to predict was fitted, with the same shape."""
        for (module, _), row in last.iterrows():
            info = self.modules.get(module)
            if info is None:
                raise ValueError(f"module {module!r} was not in the trajectory the predictor was fitted on")
            if (len(row["u"]), len(row["v"])) != (info.m, info.n):
                raise ValueError(
                    f"module {module!r}: shape ({len(row['u'])}, {len(row['v'])}) differs from the fitted "
                    f"({info.m}, {info.n})"
                )

    def _sigma_scales(self) -> dict[str, float]:
        return {module: info.sigma_scale for module, info in self.modules.items()}

    def save(self, directory: Path) -> None:
        """Write `predictor.safetensors` (keys "<group>.<parameter>") and `predictor.json` (options, groups, scales)."""
        if not self.networks:
            raise ValueError("NextPredictor.save called before fit")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"{name}.{parameter}": tensor.detach().cpu().contiguous()
            for name, network in self.networks.items()
            for parameter, tensor in network.state_dict().items()
        }
        save_file(tensors, directory / WEIGHTS_FILE)
        config = {
            "extrapolator": self.name,
            "options": asdict(self.options),
            "groups": [{"name": name, "role": role, "dim": dim} for name, (role, dim) in self.group_keys.items()],
            "modules": {module: asdict(info) for module, info in self.modules.items()},
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))

    @classmethod
    def load(cls, directory: Path) -> NextPredictor:
        """Rebuild a predictor written by `save`; it predicts identically."""
        directory = Path(directory)
        config = json.loads((directory / CONFIG_FILE).read_text())
        if config.get("extrapolator") != cls.name:
            raise ValueError(f"{directory / CONFIG_FILE} holds extrapolator {config.get('extrapolator')!r}, not 'next'")
        predictor = cls(config["options"])
        tensors = load_file(directory / WEIGHTS_FILE)
        device = predictor.options.resolved_device()
        for group in config["groups"]:
            name, key = group["name"], (group["role"], int(group["dim"]))
            prefix = f"{name}."
            network = TripletPredictor(key[1], predictor.options.hidden, predictor.options.inputs)
            network.load_state_dict({k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)})
            predictor.networks[name], predictor.group_keys[name] = network.to(device).eval(), key
        predictor.modules = {module: ModuleInfo(**info) for module, info in config["modules"].items()}
        return predictor
