"""LLM alignment: MAP, the multi-human-value alignment palette (`map/`, docs/alignment.md)."""
