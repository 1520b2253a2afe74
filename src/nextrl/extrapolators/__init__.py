"""The extrapolators behind one interface (:class:`nextrl.extrapolators.base.Extrapolator`), keyed by name.

``next`` is NExt (arXiv 2604.11446) with its ablations ``next_global`` and ``next_local``; ``linear`` is RL-Extra,
``relex`` RELEX, ``alpharl`` AlphaRL, ``repeat_last`` the trivial constant-velocity baseline (docs/method.md, "Rival
extrapolators").
"""

from nextrl.extrapolators.alpharl import AlphaRL
from nextrl.extrapolators.base import Extrapolator, ExtrapolatorError
from nextrl.extrapolators.linear import Linear
from nextrl.extrapolators.next import Next, NextGlobal, NextLocal
from nextrl.extrapolators.relex import Relex
from nextrl.extrapolators.trivial import RepeatLast
from nextrl.lowrank.module_delta import ModuleDelta

REGISTRY: dict[str, type[Extrapolator]] = {
    cls.name: cls for cls in (Next, NextGlobal, NextLocal, Linear, Relex, AlphaRL, RepeatLast)
}

__all__ = [
    "REGISTRY",
    "AlphaRL",
    "Extrapolator",
    "ExtrapolatorError",
    "Linear",
    "ModuleDelta",
    "Next",
    "NextGlobal",
    "NextLocal",
    "Relex",
    "RepeatLast",
]
