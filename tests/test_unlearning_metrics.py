"""Each TOFU / open-unlearning metric against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from llm_modules.unlearning import metrics as m


def test_probability_is_mean_of_exp_minus_mean_nll():
    assert m.probability([0.0, math.log(2.0)]) == pytest.approx(0.75)


def test_rouge_l_recall_counts_the_longest_common_subsequence_over_the_reference():
    assert m.rouge_l_recall("the cat sat", "the cat sat on the mat") == pytest.approx(0.5)
    assert m.rouge_l_recall("the dog ran", "the cat sat") == pytest.approx(1 / 3)
    # Stemming: "cats" matches "cat".
    assert m.rouge_l_recall("cats", "cat") == pytest.approx(1.0)


def test_truth_ratio_uses_the_geometric_mean_of_perturbed_probabilities():
    ratios = m.truth_ratios([1.0], [[2.0, 4.0]])
    # P_para = e^-1, P_pert = sqrt(e^-2 * e^-4) = e^-3, R = e^-2.
    assert ratios[0] == pytest.approx(math.exp(-2.0))


def test_truth_ratio_score_forget_and_other_sets():
    assert m.truth_ratio_score([0.5, 2.0], forget=True) == pytest.approx(0.5)
    assert m.truth_ratio_score([0.5, 2.0], forget=False) == pytest.approx(0.25)


def test_forget_quality_is_the_ks_p_value():
    assert m.forget_quality([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    # Fully separated samples of 5 and 5: exact two-sided p = 2 / C(10, 5).
    low, high = [0.1, 0.2, 0.3, 0.4, 0.5], [1.1, 1.2, 1.3, 1.4, 1.5]
    assert m.forget_quality(low, high) == pytest.approx(2 / 252)


def test_model_utility_is_a_harmonic_mean_and_zero_if_any_part_is_zero():
    assert m.model_utility([1.0, 0.5]) == pytest.approx(2 / 3)
    assert m.model_utility([0.9, 0.0, 0.8]) == 0.0


def test_extraction_strength_finds_the_shortest_matching_suffix():
    assert m.extraction_strength([9, 2, 3], [1, 2, 3]) == pytest.approx(2 / 3)
    assert m.extraction_strength([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert m.extraction_strength([1, 2, 9], [1, 2, 3]) == pytest.approx(0.0)


def test_min_k_score_averages_the_lowest_forty_percent_rounded_down():
    assert m.min_k_score([-1.0, -2.0, -3.0, -4.0, -5.0]) == pytest.approx(-4.5)
    assert m.min_k_score([-2.0]) == pytest.approx(-2.0)
    # open-unlearning counts max(1, int(0.4 n)): 3 tokens -> 1 (not ceil(1.2) = 2).
    assert m.min_k_score([-1.0, -2.0, -3.0]) == pytest.approx(-3.0, abs=1e-6)
    # 4 tokens -> int(1.6) = 1.
    assert m.min_k_score([-0.5, -1.5, -2.5, -0.1]) == pytest.approx(-2.5, abs=1e-6)
    assert m.min_k_score([]) == 0.0


def test_extraction_strength_of_an_empty_answer_is_zero():
    assert m.extraction_strength([], []) == 0.0


def test_mia_auc_and_privleak_in_the_muse_open_unlearning_convention():
    assert m.mia_auc([3.0, 4.0], [1.0, 2.0]) == pytest.approx(1.0)
    assert m.mia_auc([1.0, 3.0], [2.0]) == pytest.approx(0.5)
    # AUC' = 1 - AUC: model 0.25, retain 0.5 -> (0.25 - 0.5) / 0.5 * 100 = -50.
    assert m.privleak(0.75, 0.5) == pytest.approx(-50.0, abs=1e-6)
    assert m.privleak(0.5, 0.5) == pytest.approx(0.0, abs=1e-6)
    # A model that still separates its forget set perfectly: -100 (under-unlearning).
    assert m.privleak(1.0, 0.5) == pytest.approx(-100.0, abs=1e-6)
    # Forget set less likely than never-seen data: positive (over-unlearning).
    assert m.privleak(0.0, 0.5) == pytest.approx(100.0, abs=1e-6)
    # Non-chance retain model: AUC' 0.4 vs 0.55 -> -15 / 0.55 = -27.2727...
    assert m.privleak(0.6, 0.45) == pytest.approx(-27.272727, abs=1e-6)


def test_option_normalised_probability_by_hand():
    # Fact 1: P = 1/2 against 1/4 + 1/4 -> 0.5. Fact 2: P = 1 against 1/2 + 1/4 -> 1/1.75.
    value = m.option_probability(
        [math.log(2.0), 0.0], [[math.log(4.0), math.log(4.0)], [math.log(2.0), math.log(4.0)]]
    )
    assert value == pytest.approx((0.5 + 1 / 1.75) / 2, abs=1e-6)
    assert value == pytest.approx(0.5357142857, abs=1e-6)


def test_answer_based_truth_ratio_by_hand():
    # P_answer = 1/2; perturbed NLLs ln 4 and ln 16: geometric mean P = exp(-ln 8) = 1/8;
    # R = (1/8) / (1/2) = 0.25; non-forget score max(0, 1 - R) = 0.75.
    split = m.SplitScores(
        answer_nll=[math.log(2.0)], paraphrase_nll=[], perturbed_nll=[[math.log(4), math.log(16)]],
        rouge=[1.0], extraction=[1.0], min_k=[0.0], answer_based=True,
    )
    assert split.truth_ratios()[0] == pytest.approx(0.25, abs=1e-6)
    assert m.truth_ratio_score(split.truth_ratios(), forget=False) == pytest.approx(0.75, abs=1e-6)
    # The probability of such a split is option-normalised: 0.5 / (0.5 + 1/4 + 1/16).
    assert split.probability() == pytest.approx(0.5 / 0.8125, abs=1e-6)
    # Forget-style: min(R, 1/R) with R = 4 -> 0.25.
    assert m.truth_ratio_score([4.0], forget=True) == pytest.approx(0.25, abs=1e-6)


def _split(answer_nll: float, rouge: float, ratio: float, min_k: float,
           answer_based: bool = False) -> m.SplitScores:
    # A correct-answer NLL of 0 (the paraphrase's, or the answer's on answer-based splits)
    # and one perturbed NLL of -ln(ratio) give truth ratio `ratio`.
    return m.SplitScores(
        answer_nll=[0.0 if answer_based else answer_nll],
        paraphrase_nll=[] if answer_based else [0.0],
        perturbed_nll=[[-math.log(ratio)]],
        rouge=[rouge],
        extraction=[1.0],
        min_k=[min_k],
        answer_based=answer_based,
    )


def test_report_combines_registered_metrics_by_their_needs():
    scores = {
        "forget": _split(0.0, 1.0, 0.5, -0.1),
        "retain": _split(math.log(2.0), 1.0, 0.5, -0.2),
        "world": _split(0.0, 0.5, 0.5, -0.3, answer_based=True),
        "holdout": _split(3.0, 0.2, 1.0, -3.0),
    }
    plain = m.report(scores)
    assert "forget_quality" not in plain and "privleak" not in plain
    assert plain["forget_truth_ratio"] == pytest.approx(0.5)
    # World (answer-based): P_answer 1 against one option of 0.5 -> probability 2/3;
    # truth ratio 0.5 / 1 -> score 0.5. Utility parts: retain (0.5, 1.0, 0.5),
    # world (2/3, 0.5, 0.5).
    assert plain["world_probability"] == pytest.approx(2 / 3, abs=1e-6)
    assert plain["model_utility"] == pytest.approx(6 / (2 + 1 + 2 + 1.5 + 2 + 2), abs=1e-6)
    assert plain["mia_auc"] == pytest.approx(1.0)
    with_reference = m.report(scores, reference=scores)
    assert with_reference["forget_quality"] == pytest.approx(1.0)
    assert with_reference["privleak"] == pytest.approx(0.0)
    assert set(m.REPORT_METRICS["privleak"].needs) == {"forget", "holdout", "reference"}


def test_report_leaves_out_what_a_split_cannot_give():
    # TOFU's holdout has no perturbed answers; without an answer-based split there is no
    # TOFU model utility.
    holdout = m.SplitScores([1.0], [], [], [0.5], [0.5], [-1.0])
    scores = {"retain": _split(0.0, 1.0, 0.5, -0.2), "holdout": holdout}
    out = m.report(scores)
    assert "holdout_truth_ratio" not in out and "model_utility" not in out
    assert out["holdout_probability"] == pytest.approx(math.exp(-1.0))


def test_utility_at_forgetting_reads_the_reported_run_at_the_chosen_rate():
    from llm_modules.unlearning.bench import utility_at_forgetting

    def seed(fq: float, mu: float) -> dict:
        return {"test": {"target": {"lr": "-", "metrics": {}},
                         "npo": {"lr": "2e-4", "metrics": {"forget_quality": fq,
                                                           "model_utility": mu}}}}

    per_seed = [seed(0.2, 0.5), seed(0.04, 0.6), seed(0.9, 0.7)]
    # The second seed did not forget (FQ < 0.05): it counts 0; the target row is skipped.
    assert utility_at_forgetting(per_seed) == {"npo": {"median": 0.5, "min": 0.0, "max": 0.7}}


def test_learning_rate_is_selected_on_the_validation_curve():
    from llm_modules.unlearning.bench import select_lr

    def row(fq: float, mu: float) -> dict[str, float]:
        return {"forget_quality": fq, "model_utility": mu}

    # Best utility among forgotten runs (FQ >= 0.05): 2e-4, not the higher-utility 1e-4.
    assert select_lr({"1e-4": row(0.01, 0.9), "2e-4": row(0.2, 0.5),
                      "4e-4": row(0.9, 0.3)}) == "2e-4"
    # None forgotten: the best forget quality; ties go to the smaller rate.
    assert select_lr({"1e-4": row(0.01, 0.9), "2e-4": row(0.04, 0.6),
                      "4e-4": row(0.04, 0.2)}) == "2e-4"


def test_benchmark_settings_reject_a_non_positive_seed_count():
    from federation.errors import Pv4fadError
    from llm_modules.unlearning.bench import settings

    assert settings(quick=True).seeds == (0, 1, 2)
    with pytest.raises(Pv4fadError, match="--seeds must be at least 1"):
        settings(quick=False, seeds=0)


def test_further_membership_scores_by_hand():
    assert m.loss_score(1.5) == -1.5
    # zlib.compress(b"abc") is 11 bytes (2 header + 5 deflate + 4 adler32).
    assert m.zlib_score(2.0, "abc") == pytest.approx(-2.0 / 11, abs=1e-9)
    # z = (lp - mu) / sqrt(sigma) = (0, -0.5, -4); lowest max(1, int(0.4 * 3)) = 1 -> -4.
    assert m.min_k_plus_plus_score([-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0],
                                   [1.0, 4.0, 0.25]) == pytest.approx(-4.0, abs=1e-6)
    # sigma floored at 1e-6: (-1 - 0) / 1e-3.
    assert m.min_k_plus_plus_score([-1.0], [0.0], [0.0]) == pytest.approx(-1000.0, abs=1e-6)
    assert m.min_k_plus_plus_score([], [], []) == 0.0


def test_report_gives_an_auc_per_attack():
    def split(nll, zl, mkpp):
        return m.SplitScores([nll], [0.0], [[1.0]], [1.0], [1.0], [-nll],
                             zlib=[zl], min_k_plus_plus=[mkpp])

    scores = {"forget": split(0.1, -0.01, -0.5), "holdout": split(2.0, -0.2, -3.0)}
    out = m.report(scores)
    assert out["mia_loss_auc"] == 1.0 and out["mia_zlib_auc"] == 1.0
    assert out["mia_min_k_plus_plus_auc"] == 1.0
    scores["holdout"] = split(0.05, -0.001, 0.0)
    out = m.report(scores)
    assert out["mia_loss_auc"] == 0.0 and out["mia_min_k_plus_plus_auc"] == 0.0
