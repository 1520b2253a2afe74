"""Stage seeding: the one rule that turns (experiment seed, round) into a stage's torch seed."""


def stage_seed(seed: int, round_index: int) -> int:
    """Seed of a stage's own randomness (fresh LoRA initialisation, first RL chunk, extrapolator fit)."""
    return seed * 1000 + round_index
