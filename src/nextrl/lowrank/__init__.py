"""Exact low-rank algebra on weights: the SVD from factors, PEFT adapters, dense weights, the trajectory table, jumps,
the probe's ray, prediction error on held-out targets and the import of a foreign run."""
