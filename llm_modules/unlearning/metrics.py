"""TOFU / open-unlearning metrics as pure functions, and the report's metric registry.

Per-fact scores come from `evaluate.score_split`; here they become the published numbers.
A report metric is registered with `@report_metric(name, needs=...)`, where `needs` lists
the splits it reads and whether it needs the retain-only model's scores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import hmean, ks_2samp
from sklearn.metrics import roc_auc_score

MIN_K = 0.4  # fraction of lowest-probability tokens in the min-k% MIA score


def probability(mean_nlls: Sequence[float]) -> float:
    """Mean over facts of exp(-mean token NLL of the answer)."""
    return float(np.mean(np.exp(-np.asarray(mean_nlls, dtype=float))))


def rouge_l_recall(generated: str, reference: str) -> float:
    """ROUGE-L recall of a generation against the reference answer (with stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(scorer.score(reference, generated)["rougeL"].recall)


def truth_ratios(paraphrase_nll: Sequence[float], perturbed_nll: Sequence[Sequence[float]]):
    """R = P_perturbed / P_paraphrased per fact, P = exp(-mean token NLL) and P_perturbed the
    geometric mean over the perturbed answers."""
    para = np.asarray(paraphrase_nll, dtype=float)
    pert = np.asarray([np.mean(row) for row in perturbed_nll], dtype=float)
    return np.exp(para - pert)


def truth_ratio_score(ratios: Sequence[float], forget: bool) -> float:
    """Forget set: mean(min(R, 1/R)); other sets: mean(max(0, 1 - R))."""
    r = np.asarray(ratios, dtype=float)
    if forget:
        return float(np.mean(np.minimum(r, 1.0 / r)))
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


def forget_quality(model_ratios: Sequence[float], retain_model_ratios: Sequence[float]) -> float:
    """KS-test p-value between forget-set truth ratios of the model and the retain-only model."""
    return float(ks_2samp(model_ratios, retain_model_ratios).pvalue)


def model_utility(values: Sequence[float]) -> float:
    """Harmonic mean; 0 if any component is 0 (as scipy's hmean does)."""
    arr = np.asarray(values, dtype=float)
    if np.any(arr <= 0):
        return 0.0
    return float(hmean(arr))


def extraction_strength(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """1 - k/|y|, k the smallest start from which teacher-forced argmax predictions all match."""
    n = len(labels)
    for k in range(n + 1):
        if list(predictions[k:]) == list(labels[k:]):
            return 1.0 - k / n
    return 0.0


def min_k_score(token_logprobs: Sequence[float], k: float = MIN_K) -> float:
    """Mean of the lowest k fraction of token log-probabilities (higher: more member-like)."""
    values = np.sort(np.asarray(token_logprobs, dtype=float))
    count = max(1, int(np.ceil(k * len(values))))
    return float(np.mean(values[:count]))


def mia_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """AUC of telling members (forget) from non-members (holdout) by score."""
    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    return float(roc_auc_score(labels, list(member_scores) + list(nonmember_scores)))


def privleak(auc: float, retain_model_auc: float) -> float:
    """Relative MIA AUC gap to the retain-only model, in percent (0 is ideal)."""
    return (auc - retain_model_auc) / retain_model_auc * 100.0


@dataclass
class SplitScores:
    """Per-fact scores of one model on one split (see `evaluate.score_split`)."""

    answer_nll: list[float]
    paraphrase_nll: list[float]
    perturbed_nll: list[list[float]]
    rouge: list[float]
    extraction: list[float]
    min_k: list[float]

    def truth_ratios(self) -> np.ndarray:
        return truth_ratios(self.paraphrase_nll, self.perturbed_nll)


Scores = dict[str, SplitScores]
ReportFn = Callable[[Scores, Scores | None], float]


@dataclass(frozen=True)
class ReportMetric:
    name: str
    needs: tuple[str, ...]  # splits read; "reference" means the retain-only model's scores
    fn: ReportFn


REPORT_METRICS: dict[str, ReportMetric] = {}


def report_metric(name: str, needs: tuple[str, ...]) -> Callable[[ReportFn], ReportFn]:
    def add(fn: ReportFn) -> ReportFn:
        REPORT_METRICS[name] = ReportMetric(name, needs, fn)
        return fn

    return add


def _split_triplet(scores: SplitScores, forget: bool) -> list[float]:
    return [
        probability(scores.answer_nll),
        float(np.mean(scores.rouge)),
        truth_ratio_score(scores.truth_ratios(), forget=forget),
    ]


def _register_split_metrics(split: str) -> None:
    """Probability, ROUGE, truth ratio and extraction strength of one split."""
    forget = split == "forget"
    report_metric(f"{split}_probability", (split,))(
        lambda s, _r: probability(s[split].answer_nll)
    )
    report_metric(f"{split}_rouge", (split,))(lambda s, _r: float(np.mean(s[split].rouge)))
    report_metric(f"{split}_truth_ratio", (split,))(
        lambda s, _r: truth_ratio_score(s[split].truth_ratios(), forget=forget)
    )
    report_metric(f"{split}_extraction_strength", (split,))(
        lambda s, _r: float(np.mean(s[split].extraction))
    )


for _split in ("forget", "retain", "world", "holdout"):
    _register_split_metrics(_split)


@report_metric("model_utility", ("retain", "world"))
def _model_utility(scores: Scores, _reference: Scores | None) -> float:
    return model_utility(
        _split_triplet(scores["retain"], False) + _split_triplet(scores["world"], False)
    )


@report_metric("forget_quality", ("forget", "reference"))
def _forget_quality(scores: Scores, reference: Scores | None) -> float:
    assert reference is not None
    return forget_quality(scores["forget"].truth_ratios(), reference["forget"].truth_ratios())


@report_metric("mia_auc", ("forget", "holdout"))
def _mia_auc(scores: Scores, _reference: Scores | None) -> float:
    return mia_auc(scores["forget"].min_k, scores["holdout"].min_k)


@report_metric("privleak", ("forget", "holdout", "reference"))
def _privleak(scores: Scores, reference: Scores | None) -> float:
    assert reference is not None
    return privleak(_mia_auc(scores, None), _mia_auc(reference, None))


def report(scores: Scores, reference: Scores | None = None) -> dict[str, float]:
    """Every registered metric whose needs are met by the splits (and reference) given."""
    available = set(scores) | ({"reference"} if reference is not None else set())
    return {
        name: metric.fn(scores, reference)
        for name, metric in REPORT_METRICS.items()
        if set(metric.needs) <= available
    }
