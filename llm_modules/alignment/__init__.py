"""Alignment of causal LMs: MAP value palettes (`map/`, docs/alignment.md) and joint SFT +
preference post-training (`post_training*.py`, docs/post_training.md)."""
