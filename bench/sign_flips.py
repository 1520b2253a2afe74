"""Sign flips along real trajectories: the stateless sign rule vs alignment along the trajectory (docs/method.md,
"Departures from the reference code").

For every round directory of a finished experiment (jump arms' trajectories), counts consecutive same-kind,
same-module top triplets that point the same way (|cos u| > 0.3) but are stored with opposite signs
(u·u_prev + v·v_prev < 0): once for the triplets as ``nextrl.lowrank.trajectory_table`` stores them (aligned), once for
the stateless rule alone (each snapshot's triplet canonicalised on its own, as before alignment existed).

Usage: .venv/bin/python bench/sign_flips.py [results/default]
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from nextrl.lowrank.adapters import load_snapshots
from nextrl.lowrank.svd import factored_triplets
from nextrl.lowrank.trajectory_table import difference, position, trajectory_table


def count(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> tuple[int, int]:
    same_direction = [(u0, v0, u1, v1) for u0, v0, u1, v1 in pairs if abs(u0 @ u1) > 0.3]
    return sum((u0 @ u1 + v0 @ v1) < 0 for u0, v0, u1, v1 in same_direction), len(same_direction)


def aligned_pairs(table: pd.DataFrame) -> list:
    pairs = []
    for _, rows in table[(table["k"] == 0) & (table["kind"] != "round")].groupby(["module", "kind"]):
        rows = rows.sort_values("step")
        vectors = [(np.asarray(r.u), np.asarray(r.v)) for r in rows.itertuples()]
        pairs += [(*a, *b) for a, b in zip(vectors, vectors[1:], strict=False)]
    return pairs


def stateless_pairs(snapshots: dict) -> list:
    steps = sorted(snapshots)
    pairs = []
    for module in snapshots[steps[0]].factors:
        for kind in ("global", "local"):
            vectors = []
            for index, step in enumerate(steps):
                if kind == "global":
                    factors = position(snapshots[step], None, module)
                else:
                    factors = difference(snapshots[step], snapshots[steps[index - 1]] if index else None, module)
                found = factored_triplets(*factors, 1)
                vectors.append((found.u[:, 0].numpy(), found.v[:, 0].numpy()))
            pairs += [(*a, *b) for a, b in zip(vectors, vectors[1:], strict=False)]
    return pairs


experiment = Path(sys.argv[1] if len(sys.argv) > 1 else "results/default")
rows = []
for snapshots_dir in sorted(experiment.glob("*/seed*/round0/rl/snapshots"))[:3]:
    snapshots = load_snapshots(snapshots_dir)
    table = trajectory_table(snapshots, None, None, 0, 0, horizon=min(snapshots) * 2, triplets=1).to_pandas()
    table = table[table["kind"] != "target"]  # targets compared like for like: global and local only
    for rule, pairs in (("aligned", aligned_pairs(table)), ("stateless", stateless_pairs(snapshots))):
        flips, total = count(pairs)
        rows.append({"round": str(snapshots_dir.parent.parent), "rule": rule, "pairs": total, "flips": flips})
result = pd.DataFrame(rows)
result["flip_share_%"] = 100 * result["flips"] / result["pairs"]
print(result.to_markdown(index=False, floatfmt=".1f"))
