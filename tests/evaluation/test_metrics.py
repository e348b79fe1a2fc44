"""Metric wrappers: each cross-checked against a value computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossencoder.evaluation import (
    classification_metrics,
    correlation_metrics,
    expected_calibration_error,
    format_metrics,
    ranking_metrics,
)


def test_correlation_matches_hand_computed_spearman_and_pearson():
    # One swapped pair among 4: Spearman = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60 = 0.8.
    # The values are their own ranks, so Pearson is 0.8 as well.
    m = correlation_metrics([1, 2, 3, 4], [1, 3, 2, 4])
    assert m == pytest.approx({"pearson": 0.8, "spearman": 0.8})


def test_correlation_rejects_mismatched_or_too_short_inputs():
    with pytest.raises(ValueError, match="3 predictions for 2"):
        correlation_metrics([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        correlation_metrics([1], [1])


def test_classification_binary_hand_computed():
    # Class 1: precision 1, recall 1/2 -> F1 2/3; class 0: precision 2/3, recall 1 -> F1 0.8.
    # AP with scores ranking pos(0.9), neg(0.5), pos(0.3): (1/1 + 2/3) / 2.
    m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], scores=[0.1, 0.9, 0.3, 0.5])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)


def test_classification_multiclass_has_no_binary_metrics():
    m = classification_metrics([0, 1, 2, 2], [0, 2, 2, 2])
    assert set(m) == {"accuracy", "macro_f1"}
    # F1 per class: 1, 0, 0.8 -> macro 0.6.
    assert m["macro_f1"] == pytest.approx(0.6)


def test_ranking_metrics_hand_computed():
    qrels = {"q1": {"d1": 1, "d3": 2}, "q2": {"d2": 1}, "q3": {"d1": 0}}
    run = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.1}, "q2": {"d1": 0.9, "d3": 0.8, "d2": 0.7}}
    m = ranking_metrics(qrels, run, k=10, recall_at=(1, 3))
    # q3 has no relevant document and is left out. q1: RR 1; q2: relevant doc at rank 3 -> RR 1/3.
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 2)
    # q1 NDCG (linear gains): DCG = 1/log2(2) + 2/log2(4) = 2; IDCG = 2/log2(2) + 1/log2(3).
    ndcg_q1 = 2 / (2 + 1 / math.log2(3))
    ndcg_q2 = (1 / math.log2(4)) / 1
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    # AP q1 = (1/1 + 2/3) / 2, q2 = 1/3.
    assert m["map"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 3) / 2)
    assert m["recall@1"] == pytest.approx((0.5 + 0) / 2)
    assert m["recall@3"] == pytest.approx(1.0)


def test_ranking_metrics_query_missing_from_run_scores_zero():
    m = ranking_metrics({"q1": {"d1": 1}, "q2": {"d1": 1}}, {"q1": {"d1": 1.0}})
    assert m["mrr@10"] == pytest.approx(0.5)


def test_ranking_metrics_needs_a_relevant_document():
    with pytest.raises(ValueError, match="relevant"):
        ranking_metrics({"q1": {"d1": 0}}, {"q1": {"d1": 1.0}})


def test_ece_hand_computed_and_perfect_calibration():
    # Bin (0.8, 0.9]: accuracy 1/2 vs confidence 0.9 -> 0.4 * 1/2; bin (0, 0.1]: 0 vs 0.1 -> 0.1 * 1/2.
    assert expected_calibration_error([0.9, 0.9, 0.1, 0.1], [1, 0, 0, 0], n_bins=10) == pytest.approx(0.25)
    assert expected_calibration_error([0.5, 0.5, 1.0, 0.0], [1, 0, 1, 0], n_bins=10) == pytest.approx(0.0)


def test_ece_rejects_logits():
    with pytest.raises(ValueError, match="sigmoid"):
        expected_calibration_error([3.2, -1.0], [1, 0])


def test_format_metrics_table():
    text = format_metrics({"spearman": 0.88123, "pearson": float("nan")}, title="dev")
    assert text.splitlines()[0] == "dev"
    assert "spearman  0.8812" in text
    assert "nan" in text


def test_ranking_metrics_break_ties_against_the_relevant_documents():
    # A scorer that gives every candidate the same score has not ranked the relevant one first, whatever the order
    # of the candidates in the input: ties count the relevant document last.
    qrels = {"q": {"pos": 1}}
    for order in (["pos", "n1", "n2", "n3"], ["n1", "n2", "n3", "pos"]):
        m = ranking_metrics(qrels, {"q": {d: 0.0 for d in order}}, k=10, recall_at=(1,))
        assert m["mrr@10"] == pytest.approx(1 / 4) and m["recall@1"] == 0.0
    # Among tied documents the lower grade comes first (NDCG gains 1 and 2 at ranks 2 and 3 after a non-relevant).
    m = ranking_metrics({"q": {"a": 2, "b": 1}}, {"q": {"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.1}})
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 2 / 2) / (2 + 1 / math.log2(3)))
    # Distinct scores are ranked by score; a NaN score ranks last.
    m = ranking_metrics({"q": {"a": 1}}, {"q": {"b": float("nan"), "a": 0.1, "c": 0.9}})
    assert m["mrr@10"] == pytest.approx(1 / 2)


def test_classification_metrics_binary_keys_follow_the_number_of_classes():
    # A 3-class model that happens to predict only classes 0 and 1 is not a binary classifier.
    assert set(classification_metrics([0, 1, 1], [0, 1, 0], num_classes=3)) == {"accuracy", "macro_f1"}
    assert set(classification_metrics([1, 1], [1, 0], scores=[0.2, 0.1], num_classes=2)) == {
        "accuracy", "macro_f1", "f1"}


def test_ranking_metrics_refuses_fractional_relevance():
    # int(0.5) is 0: the judged document would count as not relevant and its query as a miss.
    with pytest.raises(ValueError, match=r"query 'q', document 'd': relevance 0.5 is not an integer grade"):
        ranking_metrics({"q": {"d": 0.5}, "q2": {"a": 1}}, {"q": {"d": 1.0}, "q2": {"a": 1.0}})
    assert ranking_metrics({"q": {"d": 2.0}}, {"q": {"d": 1.0}})["ndcg@10"] == 1.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "k must be a positive integer, got 0"),
    ({"k": -1}, "k must be a positive integer, got -1"),
    ({"recall_at": (10, 0)}, "recall_at must hold positive integers, got 0"),
    ({"k": 2.5}, "k must be a positive integer, got 2.5"),
])
def test_ranking_metrics_refuses_cutoffs_that_are_not_positive_integers(kwargs, message):
    # ranx reads 0 as no cut-off (MRR@0 came out 0.5 here, Recall@0 1.0) and fails on -1 with a bare assertion.
    with pytest.raises(ValueError, match=message):
        ranking_metrics({"q": {"a": 1}}, {"q": {"a": 0.5, "b": 0.7}}, **kwargs)


def test_ranking_metrics_takes_numpy_integer_cutoffs():
    # The same rule as mine_hard_negatives' counts: any integer type but bool.
    metrics = ranking_metrics({"q": {"a": 1}}, {"q": {"a": 0.5, "b": 0.7}}, k=np.int64(1),
                              recall_at=(np.int32(2),))
    assert metrics == {"mrr@1": 0.0, "ndcg@1": 0.0, "map": 0.5, "recall@2": 1.0}
    with pytest.raises(ValueError, match="k must be a positive integer, got True"):
        ranking_metrics({"q": {"a": 1}}, {"q": {"a": 0.5}}, k=True)


@pytest.mark.parametrize(("scores", "message"), [
    ([0.1, float("nan"), 0.4, float("nan")], r"scores\[1\] is nan, not a finite number \(2 of 4"),
    ([0.1, 0.9, float("inf"), 0.2], r"scores\[2\] is inf, not a finite number \(1 of 4"),
    ([0.1, 0.9, 0.4], "Got 3 scores for 4 gold labels"),
])
def test_classification_metrics_refuses_scores_it_cannot_rank_naming_them(scores, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], scores=scores)
