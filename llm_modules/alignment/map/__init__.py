"""MAP (Wang et al., ICLR 2025): align a causal LM to several human values at once, each to a
level the user sets (the palette), with the smallest KL change from the reference model.

Entry points: `rewards.build_scorers`, `sampling.sample_reference`, `solver.solve_palette`,
`baselines.sequential_alignment`, `feasibility.largest_step`, `realise.decode_realisation`,
`finetune.finetune_realisation`, `report.write_report`, `bench.run_benchmark`.
"""
