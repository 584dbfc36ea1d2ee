"""SISA (sharded, isolated, sliced, aggregated) training with exact unlearning.

`data` loads the datasets, `learners` trains one slice at a time, `shard` keeps a shard's
slices and checkpoints on its host's disk. The coordinator lives in `server/sisa.py`, the
shard ClientApp in `clients/sisa_shard.py`.
"""
