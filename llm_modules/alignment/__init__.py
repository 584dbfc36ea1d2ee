"""Alignment of causal LMs: preference post-training and multi-objective alignment."""
