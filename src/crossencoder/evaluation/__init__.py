"""Evaluate cross-encoders: metric functions (scipy / scikit-learn / ranx) and evaluators for held-out sets.

Example:
    >>> from crossencoder.evaluation import CorrelationEvaluator
    >>> CorrelationEvaluator([("A man eats.", "A man is eating.", 4.8), ("A cat.", "A car.", 0.4)])(model)
    {'pearson': 1.0, 'spearman': 1.0}
"""

from crossencoder.evaluation.evaluators import (
    ClassificationEvaluator,
    CorrelationEvaluator,
    RerankingEvaluator,
    label_ids,
)
from crossencoder.evaluation.metrics import (
    classification_metrics,
    correlation_metrics,
    expected_calibration_error,
    format_metrics,
    ranking_metrics,
)
from crossencoder.evaluation.samples import LabelledPair, RankingSample, to_labelled_pair, to_ranking_sample

__all__ = [
    "ClassificationEvaluator",
    "CorrelationEvaluator",
    "LabelledPair",
    "RankingSample",
    "RerankingEvaluator",
    "classification_metrics",
    "correlation_metrics",
    "expected_calibration_error",
    "format_metrics",
    "label_ids",
    "ranking_metrics",
    "to_labelled_pair",
    "to_ranking_sample",
]
