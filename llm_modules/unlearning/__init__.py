"""LLM unlearning: GradAscent / GradDiff / NPO / RMU in one loop, WAGLE masks, SPUNGE
split-unlearn-merge, TOFU-style metrics and a built-in benchmark (see docs/unlearning.md).

Entry points: `trainer.unlearn`, `wagle.build_mask`, `spunge.spunge`,
`evaluate.evaluate_unlearning`, `benchmark.build_benchmark`, `bench.run_benchmark`.
"""
