"""What an experiment is, from its validated config: its arms (methods and their variants), each arm's training mode
and settings, and the RL steps a round covers. The config's checks live in :mod:`nextrl.config`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def arm_method(config: Mapping[str, Any], arm: str) -> str:
    """The method an arm runs: ``none`` (plain RL) or an extrapolator's name (a variant names its ``of``)."""
    return config["variants"][arm]["of"] if arm in config["variants"] else arm


def plain_arms(config: Mapping[str, Any]) -> list[str]:
    """The arms that run plain RL (``none`` and its variants), in ``arms`` order."""
    return [arm for arm in config["arms"] if arm_method(config, arm) == "none"]


def jump_arms(config: Mapping[str, Any]) -> list[str]:
    """The arms that jump between rounds (extrapolators and their variants), in ``arms`` order."""
    return [arm for arm in config["arms"] if arm_method(config, arm) != "none"]


def arm_config(config: Mapping[str, Any], arm: str) -> dict[str, Any]:
    """The configuration one arm's stages run with: ``config`` with the arm's variant overrides (if any) applied."""
    resolved = copy.deepcopy(dict(config))
    for section, overrides in config["variants"].get(arm, {}).items():
        if section != "of":
            resolved[section] = {**resolved[section], **overrides}
    return resolved


def training_mode(config: Mapping[str, Any], arm: str) -> str:
    """How an arm's RL trains: ``lora`` or ``full`` (every weight)."""
    return arm_config(config, arm)["rl"]["mode"]


def round_start_step(config: Mapping[str, Any], round_index: int) -> int:
    """The RL step at which round r starts (docs/method.md, "The predict–extend loop"): round r covers steps r·C+1 …
    (r+1)·C."""
    return round_index * config["rl"]["chunk_steps"]
