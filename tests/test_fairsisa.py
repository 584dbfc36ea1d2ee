"""FairSISA and the equalized-odds LP: constraints met, optimality, fairlearn agreement,
metrics, and input errors."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference as fl_dpd
from fairlearn.metrics import equalized_odds_difference as fl_eod

from federation.cli import main
from llm_modules.fairness import (
    EqualizedOddsPostProcessor,
    FairnessError,
    FairSISA,
    accuracy,
    balanced_accuracy,
    demographic_parity_difference,
    equalized_odds_difference,
)
from llm_modules.fairness.equalized_odds import EmptyCellWarning
from llm_modules.fairness.fairlearn_check import FairlearnEqualizedOdds
from llm_modules.fairness.fairsisa import majority_probability


def _scored_data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores that are informative but shifted for group 1, with different base rates."""
    rng = np.random.default_rng(seed)
    group = (rng.random(n) < 0.3).astype(int)
    y = (rng.random(n) < 0.65 - 0.2 * group).astype(int)
    # Two decimals: a hundred-odd score levels keep the LP small and the test fast.
    score = np.round(np.clip(0.35 * y + 0.5 * rng.random(n) + 0.15 * group, 0, 1), 2)
    return score, y, group


def _votes(n: int = 3000, voters: int = 5, seed: int = 1) -> tuple[np.ndarray, ...]:
    score, y, group = _scored_data(n, seed)
    rng = np.random.default_rng(seed + 1)
    votes = (score[:, None] + 0.25 * rng.normal(size=(n, voters)) > 0.55).astype(int)
    return votes, y, group


@pytest.mark.parametrize("objective", ["accuracy", "balanced_accuracy"])
def test_lp_meets_equalized_odds_and_matches_fairlearn(objective: str) -> None:
    score, y, group = _scored_data()
    lp = EqualizedOddsPostProcessor(objective=objective).fit(score, y, group)
    decision = lp.predict_proba(score, group)
    assert equalized_odds_difference(y, decision, group) < 1e-7
    reference = FairlearnEqualizedOdds(objective).fit(score, y, group)
    theirs = reference.predict_proba(score, group)
    measure = accuracy if objective == "accuracy" else balanced_accuracy
    # The LP is exact; fairlearn searches a 1,000-point grid, so it may trail slightly.
    assert measure(y, decision) == pytest.approx(lp.fit_score_, abs=1e-9)
    assert measure(y, decision) >= measure(y, theirs) - 1e-9
    assert measure(y, decision) - measure(y, theirs) < 2e-3
    assert measure(y, decision) > max(y.mean(), 1 - y.mean()) if objective == "accuracy" else 0.5


def test_vote_count_is_never_worse_than_majority_on_fitting_data() -> None:
    votes, y, group = _votes()
    by_count = FairSISA("votes").fit(votes, y, group)
    by_majority = FairSISA("aggregate").fit(votes, y, group)
    for post in (by_count, by_majority):
        assert equalized_odds_difference(y, post.predict_proba(votes, group), group) < 1e-7
    assert by_count.post_[0].fit_score_ >= by_majority.post_[0].fit_score_ - 1e-12
    assert by_count.score(votes, y, group) == pytest.approx(by_count.post_[0].fit_score_)
    # The unconstrained ensemble is unfair on this data, so post-processing has work to do.
    assert equalized_odds_difference(y, (votes.sum(1) >= 3).astype(int), group) > 0.05


def test_constituent_method_probability_matches_its_draws() -> None:
    votes, y, group = _votes(n=400)
    post = FairSISA("constituent").fit(votes, y, group)
    expected = post.predict_proba(votes, group)
    draws = np.mean([post.predict(votes, group, random_state=s) for s in range(400)], axis=0)
    assert np.abs(draws - expected).max() < 0.15
    assert abs(draws.mean() - expected.mean()) < 0.01


def test_majority_probability_is_exact() -> None:
    p = np.random.default_rng(4).random((7, 4))
    brute = np.zeros(7)
    for pattern in itertools.product((0, 1), repeat=4):
        chosen = np.array(pattern)
        weight = np.prod(np.where(chosen == 1, p, 1 - p), axis=1)
        brute += weight * (2 * chosen.sum() > 4)
    assert np.allclose(majority_probability(p), brute)


def test_metrics_agree_with_fairlearn() -> None:
    rng = np.random.default_rng(5)
    y, decision, group = rng.integers(0, 2, 500), rng.integers(0, 2, 500), rng.integers(0, 3, 500)
    assert equalized_odds_difference(y, decision, group) == pytest.approx(
        fl_eod(y, decision, sensitive_features=group)
    )
    assert demographic_parity_difference(decision, group) == pytest.approx(
        fl_dpd(y, decision, sensitive_features=group)
    )
    assert accuracy(np.array([1, 0, 1]), np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)


def test_bad_inputs_give_clear_errors() -> None:
    score, y, group = _scored_data(200)
    with pytest.raises(FairnessError, match="group 7 has no positive labels"):
        EqualizedOddsPostProcessor().fit(score, np.where(group == 1, 0, y), np.where(group, 7, 0))
    with pytest.raises(FairnessError, match="equal length"):
        EqualizedOddsPostProcessor().fit(score, y, group[:-1])
    with pytest.raises(FairnessError, match="labels must be 0/1"):
        EqualizedOddsPostProcessor().fit(score, y + 1, group)
    fitted = EqualizedOddsPostProcessor().fit(score, y, group)
    with pytest.raises(FairnessError, match=r"groups \[5\] were not seen"):
        fitted.predict_proba(score[:3], np.array([0, 1, 5]))
    with pytest.raises(FairnessError, match="method 'best'"):
        FairSISA("best").fit(np.ones((4, 3)), y[:4], group[:4])
    with pytest.raises(FairnessError, match="2-d array"):
        FairSISA().fit(score, y, group)
    with pytest.raises(FairnessError, match=r"in \[0, 1\]"):
        FairSISA().fit(np.full((200, 3), 2.0), y, group)
    votes, y, group = _votes(n=300)
    with pytest.raises(FairnessError, match="fitted on 5 voters, got 4"):
        FairSISA().fit(votes, y, group).predict(votes[:, :4], group)


def test_fairness_command_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sisa", "fairness", "--shards", "3", "--slices", "2", "--seeds", "1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    medians = result["medians"]
    assert set(medians) >= {"single model", "FairSISA (c) vote count"}
    for name in ("single + EO (LP)", "FairSISA (b) aggregate", "FairSISA (c) vote count"):
        assert result["calibration_eod"][name] < 1e-6
    check = result["runs"][0]["lp_vs_fairlearn"]
    assert check["lp_on_calibration"] >= check["fairlearn_on_calibration"] - 1e-9
    assert check["lp_on_calibration"] - check["fairlearn_on_calibration"] < 2e-3
    assert main(["sisa", "fairness", "--sensitive", "height", "--seeds", "1"]) == 2
    assert "no group 'height'" in capsys.readouterr().err


def test_empty_cells_are_decided_from_the_nearest_seen_level_and_warn() -> None:
    votes, y, group = _votes(n=2000, voters=7)
    count = votes.sum(axis=1)
    # Group 1 never has 0 or 7 votes in fitting: those cells have no rows.
    keep = ~((group == 1) & ((count == 0) | (count == 7)))
    post = FairSISA("votes").fit(votes[keep], y[keep], group[keep])
    lp = post.post_[0]
    assert lp.empty_[1, 0] and lp.empty_[1, 7] and not lp.empty_[0].any()
    nearest_low = lp.levels_[~lp.empty_[1]].min()
    nearest_high = lp.levels_[~lp.empty_[1]].max()
    assert lp.p_[1, 0] == lp.p_[1, int(nearest_low)]
    assert lp.p_[1, 7] == lp.p_[1, int(nearest_high)]
    row_votes = np.zeros((1, 7), dtype=int)
    with pytest.warns(EmptyCellWarning, match="1 rows fall in"):
        decided = post.predict_proba(row_votes, np.array([1]))
    assert decided[0] == lp.p_[1, int(nearest_low)]
    # On the fitting rows nothing lands in an empty cell, so no warning and EO holds.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = post.predict_proba(votes[keep], group[keep])
    assert equalized_odds_difference(y[keep], fitted, group[keep]) < 1e-7


def test_nearest_fill_takes_the_nearer_seen_level_or_the_mean_of_two() -> None:
    # Group 1 is seen only at levels 0 and 4: level 1 takes 0's decision, 3 takes 4's, and
    # 2, as near to both, their mean.
    score = np.array([0, 1, 2, 3, 4] * 4 + [0, 4, 0, 4, 0, 4], dtype=float)
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0, 1, 1] * 2 + [0, 1, 1, 0, 0, 1])
    group = np.array([0] * 20 + [1] * 6)
    lp = EqualizedOddsPostProcessor(monotone=False, levels=np.arange(5.0)).fit(score, y, group)
    assert lp.empty_[1].tolist() == [False, True, True, True, False]
    p = lp.p_[1]
    assert p[1] == p[0] and p[3] == p[4] and p[2] == (p[0] + p[4]) / 2


def test_pooled_fill_uses_the_other_groups_at_that_level() -> None:
    score = np.array([0, 1, 2, 0, 1, 2, 1, 1, 2, 2, 1, 2], dtype=float)
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1])
    group = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    lp = EqualizedOddsPostProcessor(monotone=False, levels=np.arange(3.0), fill="pooled")
    lp.fit(score, y, group)
    assert lp.empty_[1, 0] and not lp.empty_[0, 0]
    assert lp.p_[1, 0] == lp.p_[0, 0]
    with pytest.raises(FairnessError, match="fill 'mean'"):
        EqualizedOddsPostProcessor(fill="mean").fit(score, y, group)


def test_vote_count_allows_any_map_by_default() -> None:
    assert FairSISA("votes")._monotone() is False
    assert FairSISA("aggregate")._monotone() is True
    votes, y, group = _votes(n=1500)
    free = FairSISA("votes").fit(votes, y, group)
    bound = FairSISA("votes", monotone=True).fit(votes, y, group)
    assert free.post_[0].fit_score_ >= bound.post_[0].fit_score_ - 1e-12


def test_joint_pattern_is_never_worse_than_the_count_on_fitting_data() -> None:
    votes, y, group = _votes(n=3000, voters=4)
    pattern = FairSISA("pattern").fit(votes, y, group)
    count = FairSISA("votes").fit(votes, y, group)
    assert pattern.post_[0].fit_score_ >= count.post_[0].fit_score_ - 1e-12
    assert equalized_odds_difference(y, pattern.predict_proba(votes, group), group) < 1e-7
    fitted = {tuple(p) for p in pattern.patterns_.tolist()}
    missing = [p for p in itertools.product((0, 1), repeat=4) if p not in fitted]
    if missing:
        with pytest.warns(EmptyCellWarning, match="not seen in fit"):
            pattern.predict_proba(np.array(missing[:1]), np.array([0]))


@pytest.mark.parametrize("method", ["constituent", "aggregate", "votes", "pattern"])
def test_prediction_tolerates_an_excluded_voter(method: str) -> None:
    votes, y, group = _votes(n=2000, voters=5)
    post = FairSISA(method).fit(votes, y, group)
    answering = [0, 1, 3, 4]
    with pytest.raises(FairnessError, match="fitted on 5 voters, got 4; name the answering"):
        post.predict_proba(votes[:, answering], group)
    reduced = post.predict_proba(votes[:, answering], group, voters=answering)
    if method == "constituent":
        # The kept voters' own post-processors, then their majority.
        each = np.stack(
            [post.post_[m].predict_proba(votes[:, m], group) for m in answering], axis=1
        )
        assert np.allclose(reduced, majority_probability(each))
    else:
        # Equal to a post-processor fitted on the answering voters only, so EO holds again.
        alone = FairSISA(method).fit(votes[:, answering], y, group)
        assert np.allclose(reduced, alone.predict_proba(votes[:, answering], group))
        assert equalized_odds_difference(y, reduced, group) < 1e-7
    with pytest.raises(FairnessError, match="must name each of the 4 vote columns once"):
        post.predict_proba(votes[:, answering], group, voters=[0, 1, 3])
    with pytest.raises(FairnessError, match=r"must lie in 0..4"):
        post.predict_proba(votes[:, answering], group, voters=[0, 1, 3, 9])


@pytest.mark.parametrize("method", ["constituent", "aggregate", "votes", "pattern"])
def test_incremental_refit_equals_refitting_from_scratch(method: str) -> None:
    votes, y, group = _votes(n=1500, voters=5)
    post = FairSISA(method).fit(votes, y, group)
    rng = np.random.default_rng(9)
    changed = votes.copy()
    flip = rng.random(len(y)) < 0.1
    changed[flip, 2] = 1 - changed[flip, 2]
    post.update_voter(2, changed[:, 2])
    scratch = FairSISA(method).fit(changed, y, group)
    assert np.allclose(post.predict_proba(changed, group), scratch.predict_proba(changed, group))
    rows = np.nonzero(rng.random(len(y)) < 0.05)[0]
    post.forget_rows(rows)
    keep = np.setdiff1d(np.arange(len(y)), rows)
    scratch = FairSISA(method).fit(changed[keep], y[keep], group[keep])
    assert np.allclose(
        post.predict_proba(changed[keep], group[keep]),
        scratch.predict_proba(changed[keep], group[keep]),
    )
    # The kept per-row vote counts follow the votes through updates and deletions.
    assert np.array_equal(post.count_, post.votes_.sum(axis=1))
    with pytest.raises(FairnessError, match="voter 7 not in 0..4"):
        post.update_voter(7, changed[keep, 0])
    with pytest.raises(FairnessError, match=r"scores in \[0, 1\]"):
        post.update_voter(0, np.full(len(keep), np.nan))


@pytest.mark.parametrize("objective", ["accuracy", "balanced_accuracy"])
def test_two_group_geometric_solver_equals_the_general_lp(objective: str) -> None:
    for seed in range(25):
        rng = np.random.default_rng(seed)
        n, levels = int(rng.integers(60, 2000)), int(rng.integers(2, 22))
        group = (rng.random(n) < rng.uniform(0.1, 0.5)).astype(int)
        y = (rng.random(n) < rng.uniform(0.25, 0.75) - 0.1 * group).astype(int)
        spread = rng.uniform(0.5, 1.5) ** group
        score = np.clip(np.round((levels - 1) * (0.4 * y + 0.6 * rng.random(n) * spread)),
                        0, levels - 1)
        grid = np.arange(float(levels))
        fast = EqualizedOddsPostProcessor(False, grid, objective).fit(score, y, group)
        general = EqualizedOddsPostProcessor(False, grid, objective, fast=False)
        general.fit(score, y, group)
        assert fast.fit_score_ == pytest.approx(general.fit_score_, abs=1e-9)
        decided = fast.predict_proba(score, group)
        assert equalized_odds_difference(y, decided, group) < 1e-9
        measure = accuracy if objective == "accuracy" else balanced_accuracy
        assert measure(y, decided) == pytest.approx(fast.fit_score_, abs=1e-9)


@pytest.mark.parametrize("objective", ["accuracy", "balanced_accuracy"])
def test_two_group_geometric_solver_for_thresholds_equals_the_general_lp(objective: str) -> None:
    """Monotone maps over discrete levels ((a) and (b) use two): same optimum as HiGHS."""
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        n, levels = int(rng.integers(60, 2000)), [2, 2, 3, 6, 15][seed % 5]
        group = (rng.random(n) < rng.uniform(0.1, 0.5)).astype(int)
        y = (rng.random(n) < rng.uniform(0.25, 0.75) - 0.1 * group).astype(int)
        signal = rng.uniform(-0.3, 0.6)  # some instances score worse than chance
        score = np.clip(np.round((levels - 1) * (signal * y + (1 - abs(signal)) * rng.random(n)
                                                 + 0.2 * group * rng.random(n))), 0, levels - 1)
        grid = np.arange(float(levels))
        fast = EqualizedOddsPostProcessor(True, grid, objective).fit(score, y, group)
        general = EqualizedOddsPostProcessor(True, grid, objective, fast=False)
        general.fit(score, y, group)
        assert fast.fit_score_ == pytest.approx(general.fit_score_, abs=1e-9)
        assert (np.diff(fast.p_, axis=1) >= -1e-12).all()  # still thresholds
        decided = fast.predict_proba(score, group)
        assert equalized_odds_difference(y, decided, group) < 1e-9
        measure = accuracy if objective == "accuracy" else balanced_accuracy
        assert measure(y, decided) == pytest.approx(fast.fit_score_, abs=1e-9)


def test_aggregate_update_re_solves_only_when_a_majority_flips() -> None:
    votes, y, group = _votes(n=1500, voters=5)
    post = FairSISA("aggregate").fit(votes, y, group)
    count = votes.sum(axis=1)
    changed = votes.copy()
    # Flip voter 0 only where the count stays on the same side of the majority.
    safe = (count <= 1) | (count >= 4)
    changed[safe, 0] = 1 - changed[safe, 0]
    post.update_voter(0, changed[:, 0])
    assert not post.resolved_
    scratch = FairSISA("aggregate").fit(changed, y, group)
    assert np.allclose(post.predict_proba(changed, group), scratch.predict_proba(changed, group))
    changed[:, 0] = 1 - votes[:, 0]  # now some majorities flip
    post.update_voter(0, changed[:, 0])
    assert post.resolved_
    scratch = FairSISA("aggregate").fit(changed, y, group)
    assert np.allclose(post.predict_proba(changed, group), scratch.predict_proba(changed, group))


def test_sklearn_shaped_estimator_and_metric_frame() -> None:
    from sklearn.base import clone

    from llm_modules.fairness.estimator import FairSISAClassifier, metric_frame, tradeoff

    votes, y, group = _votes(n=1500)
    model = FairSISAClassifier(method="votes", random_state=3)
    assert model.get_params()["method"] == "votes"
    assert clone(model).set_params(tolerance=0.05).get_params()["tolerance"] == 0.05
    model.fit(votes, y, sensitive_features=group)
    proba = model.predict_proba(votes, sensitive_features=group)
    assert proba.shape == (1500, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.allclose(proba[:, 1], FairSISA("votes").fit(votes, y, group).predict_proba(
        votes, group))
    assert set(np.unique(model.predict(votes, sensitive_features=group))) <= {0, 1}
    frame = metric_frame(y, proba[:, 1], group)
    assert set(frame["by_group"]) == {"0", "1"}
    assert frame["difference"]["tpr"] < 1e-7 and frame["difference"]["fpr"] < 1e-7
    assert frame["overall"]["accuracy"] == pytest.approx(accuracy(y, proba[:, 1]))
    assert max(frame["difference"]["tpr"], frame["difference"]["fpr"]) == pytest.approx(
        equalized_odds_difference(y, proba[:, 1], group), abs=1e-12)
    curves = tradeoff(votes, y, group, votes, y, group, tolerances=(0.0, 0.1),
                      methods=("votes",))
    strict, loose = curves["votes"]
    # A looser bound can only help on the fitting rows, and the gap stays within it.
    assert loose["accuracy"] >= strict["accuracy"] - 1e-12
    assert loose["equalized_odds_difference"] <= 0.1 + 1e-9


def test_fairness_through_unlearning_refits_exactly(tmp_path: Path) -> None:
    from server.sisa_fairness import FairnessSetup, run_unlearning

    setup = FairnessSetup(shards=3, slices=2, epochs=1)
    result = run_unlearning(setup, 0, tmp_path, steps=2, share=0.02, concentrated=True,
                            single_requests=1)
    steps = result["sequence"]
    assert [s["step"] for s in steps] == [0, 1, 2]
    assert all(s["refit_equals_scratch"] for s in steps[1:])
    assert steps[2]["forgotten_share"] == pytest.approx(0.04, abs=0.005)
    assert steps[2]["calibration_rows"] < steps[1]["calibration_rows"] < 250
    for step in steps:
        assert set(step["test"]) == {"constituent", "aggregate", "votes"}
    single = result["single"][0]
    assert single["retrain_samples"] > 0 and single["refit_update_seconds"]["votes"] > 0
    # The votes came back with the forget, equal to querying the retrained shard again.
    assert single["reply_equals_requery"] and single["query_seconds"] > 0


def test_refit_cost_run_checks_its_refits(tmp_path: Path) -> None:
    from server.sisa_fairness import FairnessSetup, run_refit_cost

    result = run_refit_cost(FairnessSetup(shards=3, slices=2, epochs=1), 0, tmp_path, 3)
    assert result["refit_equals_scratch"] and len(result["single"]) == 3
    for single in result["single"]:
        assert single["reply_equals_requery"]
        assert 0 < single["query_seconds"] < single["forget_seconds"]
        # The holder's own retrain, timed on the host, is part of the forget's wall time.
        assert 0 < single["host_retrain_seconds"] < single["retrain_seconds"]
        assert single["host_retrain_cpu_seconds"] > 0
        assert set(single["refit_cpu_fraction_of_host_retrain"]) == {
            "constituent", "aggregate", "votes"}
        assert single["retrain_seconds"] == pytest.approx(
            single["forget_seconds"] - single["query_seconds"])
