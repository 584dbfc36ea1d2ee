"""LLM modules: unlearning, alignment, calibration, poisoning audit, FairSISA."""
