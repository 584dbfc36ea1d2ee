"""Prefix-tuning wiring on a tiny causal LM: the prefix reaches attention, only the prefix
trains, and the base reads the real tokens at the positions it was pretrained on."""

import pytest
import torch

from llm_modules.models import TinyModelConfig, tiny_causal_lm, word_level_tokenizer
from llm_modules.poisoning.finetune import FinetuneConfig, attach, finetune
from llm_modules.poisoning.lm import SEP, LoadedLM, generate, prefix_shift, training_batch
from llm_modules.poisoning.tasks import Example

EXAMPLES = [Example("a b c", "d e ."), Example("a b c d e f", "g ."), Example("f e", "a .")]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(virtual_tokens: int = 7):
    tokenizer = word_level_tokenizer(["a b c d e f g . cf", SEP])
    model = tiny_causal_lm(TinyModelConfig(layers=2, width=32, heads=2, max_positions=64),
                           tokenizer, seed=0)
    lm = LoadedLM(model, tokenizer, False)
    return lm, FinetuneConfig(virtual_tokens=virtual_tokens, epochs=1, batch_size=3)


def record_positions(lm: LoadedLM) -> tuple[list[torch.Tensor], object]:
    """Every position-id tensor the base's position embedding is called with."""
    seen: list[torch.Tensor] = []
    hook = lm.model.transformer.wpe.register_forward_hook(
        lambda module, args, out: seen.append(args[0].detach().clone()))
    return seen, hook


def test_prefix_changes_outputs_and_only_the_prefix_trains():
    lm, config = tiny()
    batch = training_batch(lm, EXAMPLES)
    plain = lm.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    model = attach(lm, config)
    assert prefix_shift(model) == 7 and prefix_shift(lm.model) == 0
    prefixed = model(**dict(batch, position_ids=batch["position_ids"] - 7)).logits
    assert (prefixed - plain).abs().max() > 1e-3  # the virtual tokens reach attention
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("prompt_encoder" in n for n in names)


def test_prefix_keeps_the_base_positions_in_training_and_generation():
    """peft adds the number of virtual tokens to given position ids; the base must still
    see 0, 1, 2, ... on each row's real tokens, as in its pretraining."""
    lm, config = tiny(virtual_tokens=7)
    seen, hook = record_positions(lm)
    try:
        model = finetune(lm, EXAMPLES, config)
        trained = list(seen)
        seen.clear()
        generate(model, lm, [e.input for e in EXAMPLES], max_new_tokens=2)
    finally:
        hook.remove()
    expected = training_batch(lm, EXAMPLES)["position_ids"]
    assert trained and all(int(p.min()) == 0 for p in trained)
    assert any(torch.equal(p.sort(0).values, expected.sort(0).values) for p in trained)
    first_step = seen[0]
    prompt_lengths = [len(lm.tokenizer(f"{e.input} {SEP}")["input_ids"]) for e in EXAMPLES]
    assert first_step[:, -1].tolist() == [n - 1 for n in prompt_lengths]
