"""What every extrapolator shares: the interface, option parsing and saving. The predicted delta is
:class:`nextrl.lowrank.module_delta.ModuleDelta`; the trajectory queries live in :mod:`nextrl.lowrank.trajectory_table`.

An extrapolator learns (or computes in closed form) how the weights of one RL round move and predicts the update
W_{T+H} − W_T from the round's last snapshot T, H = ``jump.horizon`` steps ahead (NExt, arXiv 2604.11446 §3 step 5;
the rivals of docs/method.md, "Rival extrapolators" fit the same interface). Candidates are then W_T + α·ΔŴ for every α
of ``jump.alphas``.
Every method reads the round's trajectory table (schema owned by :mod:`nextrl.lowrank.trajectory_table`);
accuracy-driven methods also read ``evaluations`` (columns step, accuracy: the round's validation accuracy per
snapshot).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import pandas as pd

from nextrl.lowrank.module_delta import ModuleDelta
from nextrl.lowrank.trajectory_table import deltas_at, last_step, validate_trajectory
from nextrl.type_hints import matches_type

OPTIONS_FILE = "options.json"


class ExtrapolatorError(ValueError):
    """An extrapolator cannot fit or predict on what it was given; the message names the module, step or option."""


@runtime_checkable
class Extrapolator(Protocol):
    """Predicts W_{T+H} − W_T per module from one round's trajectory (NExt §3 step 5; docs/method.md, "Rival
    extrapolators").

    ``name`` is the registry key (what ``arms`` and ``extrapolators`` in the config name); ``Options`` the frozen
    dataclass of its options, whose fields mirror the method's block in the config schema; ``requires_evaluations``
    whether ``fit`` needs the per-snapshot accuracies.
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    requires_evaluations: ClassVar[bool]

    def __init__(self, options: Mapping[str, Any] | None = None, seed: int = 0) -> None: ...

    def fit(self, trajectory: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
        """Fit on the round's trajectory; returns the fit log (columns epoch, group, loss, lr; empty if closed form)."""
        ...

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        """Predicted delta W_{T+H} − W_T per trained module, from the state at the last snapshot T."""
        ...

    def save(self, directory: Path) -> None:
        """Write what ``load`` needs into ``directory`` (options.json plus any safetensors)."""
        ...

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Rebuild an extrapolator written by ``save``; it predicts identically."""
        ...


def parse_options(options_class: type, options: Mapping[str, Any] | None, method: str) -> Any:
    """``options_class(**options)`` with unknown keys and wrong types refused, naming ``extrapolators.<method>.<key>``.

    The config schema rejects the same values before anything runs; this guards direct (library) use.
    """
    known = {field.name: field for field in dataclasses.fields(options_class)}
    given = dict(options or {})
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ExtrapolatorError(f"extrapolators.{method}: unknown option(s) {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(options_class)
    for key, value in given.items():
        if not matches_type(value, hints[key]):
            raise ExtrapolatorError(f"extrapolators.{method}.{key}: {value!r} is not of type {hints[key]}")
    return options_class(**given)


class OptionsOnly:
    """Save/load for extrapolators whose whole fitted state is their options (closed-form methods)."""

    name: ClassVar[str]
    Options: ClassVar[type]
    requires_evaluations: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None, seed: int = 0) -> None:
        self.options = parse_options(self.Options, options, self.name)
        self.seed = seed

    def fit(self, trajectory: pd.DataFrame, evaluations: pd.DataFrame | None = None) -> pd.DataFrame:
        validate_trajectory(trajectory, require_targets=False)
        return empty_fit_log()

    def save(self, directory: Path) -> None:
        write_options(directory, self)

    @classmethod
    def load(cls, directory: Path) -> Self:
        return restore(cls, directory)[0]


class ScaledLastDelta(OptionsOnly):
    """Closed-form extrapolators whose ΔŴ is one stored delta kind at the last snapshot T times a factor."""

    kind: ClassVar[str]

    def factor(self, trajectory: pd.DataFrame) -> float:
        raise NotImplementedError

    def predict(self, trajectory: pd.DataFrame) -> dict[str, ModuleDelta]:
        validate_trajectory(trajectory, require_targets=False)
        factor = self.factor(trajectory)
        return {
            module: delta.scaled(factor)
            for module, delta in deltas_at(trajectory, self.kind, last_step(trajectory)).items()
        }


def write_options(directory: Path, extrapolator: Any, **extra: Any) -> None:
    """``options.json``: the extrapolator's registry name, options and seed, plus what its ``load`` needs."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "extrapolator": extrapolator.name,
        "options": dataclasses.asdict(extrapolator.options),
        "seed": extrapolator.seed,
        **extra,
    }
    (directory / OPTIONS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))


def restore(method_class: type, directory: Path) -> tuple[Any, dict[str, Any]]:
    """A new ``method_class`` with the options and seed saved in ``directory``, and the saved manifest."""
    manifest = read_manifest(directory)
    if manifest["extrapolator"] != method_class.name:
        raise ExtrapolatorError(
            f"{Path(directory) / OPTIONS_FILE} holds extrapolator {manifest['extrapolator']!r}, "
            f"not {method_class.name!r}"
        )
    return method_class(manifest["options"], manifest["seed"]), manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / OPTIONS_FILE
    if not path.is_file():
        raise ExtrapolatorError(f"{directory} holds no fitted extrapolator ({OPTIONS_FILE} missing)")
    return json.loads(path.read_text())


def empty_fit_log() -> pd.DataFrame:
    return pd.DataFrame({"epoch": pd.Series(dtype="int64"), "group": pd.Series(dtype="str"),
                         "loss": pd.Series(dtype="float64"), "lr": pd.Series(dtype="float64")})  # fmt: skip
