"""Fairness post-processing: Hardt et al. (2016) equalized odds, and FairSISA for ensembles."""

from llm_modules.fairness.equalized_odds import (
    EmptyCellWarning,
    EqualizedOddsPostProcessor,
    FairnessError,
)
from llm_modules.fairness.estimator import FairSISAClassifier, metric_frame
from llm_modules.fairness.fairsisa import FAIRSISA_METHODS, FairSISA
from llm_modules.fairness.metrics import (
    accuracy,
    balanced_accuracy,
    demographic_parity_difference,
    equalized_odds_difference,
    fairness_report,
    group_rates,
)

__all__ = [
    "FAIRSISA_METHODS",
    "EmptyCellWarning",
    "FairSISAClassifier",
    "metric_frame",
    "EqualizedOddsPostProcessor",
    "FairSISA",
    "FairnessError",
    "accuracy",
    "balanced_accuracy",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "fairness_report",
    "group_rates",
]
