"""LLM unlearning: GradAscent / GradDiff / NPO / SimNPO / IdkNLL / IdkDPO / RMU in one loop,
WAGLE masks, SPUNGE split-unlearn-merge, TOFU-style metrics, the survey's assessment and a
built-in benchmark (see docs/unlearning.md).

Entry points: `trainer.unlearn`, `wagle.build_mask`, `spunge.spunge`,
`evaluate.evaluate_unlearning`, `assess.assess`, `benchmark.build_benchmark`,
`bench.run_benchmark`.
"""
