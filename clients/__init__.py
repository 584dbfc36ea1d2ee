"""Party logic as Flower ClientApps: PNS, bank, SISA shard, LLM worker."""
