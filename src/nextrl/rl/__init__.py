"""Reinforcement learning: the GRPO training loop, its loss, advantages, micro-batches, importance correction and
learning-rate schedule."""
