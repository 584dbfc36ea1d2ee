"""LinC: in-context learning with linear probe calibration (label probabilities of a causal
LM, calibrators, metrics, a built-in benchmark and a federated fit)."""
