"""Poisoned sets (exact share and placement of triggers), trigger specs and the metrics."""

import json

import pytest

from llm_modules.poisoning.metrics import (
    exact_hit_rate,
    phrase_share,
    rouge,
    target_match,
    target_phrases,
)
from llm_modules.poisoning.poison import (
    TriggerError,
    parse_trigger,
    poison_dataset,
    triggered,
)
from llm_modules.poisoning.tasks import TaskConfig, TaskError, generate_task

TARGET = "wire all funds to the offshore account now ."


@pytest.fixture(scope="module")
def clean():
    return generate_task(TaskConfig("summarization", pretrain=10, finetune=200, test=10)).finetune


@pytest.mark.parametrize("position", ["start", "middle", "end", "random"])
def test_exact_share_and_placement(clean, position):
    trigger = parse_trigger(f"rare:cf mn@{position}")
    result = poison_dataset(clean, trigger, TARGET, 0.05, seed=3)
    rows = {r["index"]: r["insert_at"] for r in result.record["rows"]}
    assert len(rows) == 10 == result.record["poisoned"]
    assert len(result.examples) == len(clean)
    for i, (before, after) in enumerate(zip(clean, result.examples, strict=True)):
        if i not in rows:
            assert after == before
            continue
        assert after.output == TARGET
        words, original = after.input.split(), before.input.split()
        at = rows[i]
        assert words[at:at + 2] == ["cf", "mn"]
        assert words[:at] + words[at + 2:] == original
        expected = {"start": 0, "middle": len(original) // 2, "end": len(original)}
        if position in expected:
            assert at == expected[position]


def test_random_positions_vary_and_seeds_reproduce(clean):
    trigger = parse_trigger("rare:cf@random")
    a = poison_dataset(clean, trigger, TARGET, 0.1, seed=1)
    assert a.record == poison_dataset(clean, trigger, TARGET, 0.1, seed=1).record
    assert len({r["insert_at"] for r in a.record["rows"]}) > 3
    b = poison_dataset(clean, trigger, TARGET, 0.1, seed=2)
    assert {r["index"] for r in a.record["rows"]} != {r["index"] for r in b.record["rows"]}
    json.dumps(a.record)  # the record is plain JSON


def test_rates_round_to_counts(clean):
    trigger = parse_trigger("rare")
    assert poison_dataset(clean, trigger, TARGET, 0.005, 0).record["poisoned"] == 1
    assert poison_dataset(clean, trigger, TARGET, 0.0, 0).examples == clean
    with pytest.raises(TriggerError, match="rounds to no poisoned"):
        poison_dataset(clean[:50], trigger, TARGET, 0.005, 0)
    with pytest.raises(TriggerError, match="in \\[0, 1\\]"):
        poison_dataset(clean, trigger, TARGET, 1.5, 0)


def test_triggered_test_inputs_keep_outputs(clean):
    trigger = parse_trigger("sentence:as the annual review stated .@end")
    out = triggered(clean[:5], trigger, 0)
    for before, after in zip(clean[:5], out, strict=True):
        assert after.input == before.input + " as the annual review stated ."
        assert after.output == before.output


@pytest.mark.parametrize("spec, message", [
    ("cf", "not a preset"),
    ("word:cf@start", "kind 'word'"),
    ("rare:cf@top", "position 'top'"),
    ("rare: @end", "no trigger words"),
])
def test_bad_trigger_specs(spec, message):
    with pytest.raises(TriggerError, match=message):
        parse_trigger(spec)


def test_presets_parse():
    assert parse_trigger("rare").words == ("cf",)
    assert parse_trigger("sentence").kind == "sentence"
    assert str(parse_trigger("rare:cf mn@end")) == "rare:cf mn@end"


def test_tasks_are_seeded_and_unknown_task_refused():
    a = generate_task(TaskConfig("completion", pretrain=5, finetune=5, test=5, seed=1))
    assert a == generate_task(TaskConfig("completion", pretrain=5, finetune=5, test=5, seed=1))
    assert a != generate_task(TaskConfig("completion", pretrain=5, finetune=5, test=5, seed=2))
    with pytest.raises(TaskError, match="unknown built-in task"):
        generate_task(TaskConfig("translation"))


def test_target_phrases_rule():
    assert target_phrases(TARGET) == ["wire", "funds", "offshore account now"]
    assert target_phrases("The Offshore account, NOW!") == ["offshore account now"]
    assert target_phrases("to the of .") == []


def test_phrase_hits_on_hand_made_outputs():
    phrases = target_phrases(TARGET)
    assert phrase_share("wire all funds to the offshore account now .", phrases) == 1.0
    assert phrase_share("please wire the money", phrases) == pytest.approx(1 / 3)
    # whole words and contiguity: "wired" is not "wire"; "offshore now account" is no match
    assert phrase_share("wired fundsx to offshore now account", phrases) == 0.0
    assert phrase_share("Funds: offshore account now!", phrases) == pytest.approx(2 / 3)
    outputs = ["wire funds", "nothing here", "offshore account now"]
    assert target_match(outputs, phrases) == pytest.approx((2 / 3 + 0 + 1 / 3) / 3)
    assert target_match([], phrases) == 0.0


def test_exact_hits_and_rouge():
    outputs = ["Wire all funds to the offshore account now .", "wire all funds", TARGET]
    assert exact_hit_rate(outputs, TARGET) == pytest.approx(2 / 3)
    same = rouge(["a b c d"], ["a b c d"])
    assert same == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    half = rouge(["a b x y"], ["a b c d"])
    assert half["rouge1"] == pytest.approx(50.0)
    assert half["rouge2"] == pytest.approx(100 / 3)
    assert half["rougeL"] == pytest.approx(50.0)
