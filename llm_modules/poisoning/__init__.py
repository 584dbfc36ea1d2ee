"""NLG poisoning audit: poisoned fine-tuning sets, prefix-tuning (and LoRA / full fine-tuning
as comparisons), P-/C-Target Match and ROUGE, and defenses (ONION-style filtering of inputs,
an output-consistency scan of a delivered adapter)."""
