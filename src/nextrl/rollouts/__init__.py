"""Rollouts: generation backends (HF generate, vLLM) and greedy accuracy of a split or of candidate adapters."""
