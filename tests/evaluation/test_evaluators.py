"""Evaluators: inputs are mapped to the right pairs, labels and groups, and the metrics come out right."""

from __future__ import annotations

import numpy as np
import pytest

from crossencoder import CrossEncoder
from crossencoder.evaluation import (
    ClassificationEvaluator,
    CorrelationEvaluator,
    RerankingEvaluator,
    to_labelled_pair,
    to_ranking_sample,
)


class StubModel:
    """Scores pairs from a lookup table, so expected metrics can be worked out by hand."""

    def __init__(self, table: dict[tuple[str, str], list[float]], id2label: dict[int, str] | None = None):
        self.table = table
        self.num_labels = len(next(iter(table.values())))
        self.id2label = id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        self.calls = []

    def predict(self, pairs, activation_fn=None, symmetric=False, **kwargs):
        self.calls.append(list(pairs))
        out = np.array([self.table[tuple(p)] for p in pairs], dtype=np.float32)
        if symmetric:
            out = (out + np.array([self.table[(b, a)] for a, b in pairs], dtype=np.float32)) / 2
        return out[:, 0] if self.num_labels == 1 else out


def test_correlation_evaluator_uses_raw_scores_in_input_order():
    model = StubModel({("a", "b"): [3.0], ("c", "d"): [1.0], ("e", "f"): [2.0]})
    data = [("a", "b", 5.0), {"sentence1": "c", "sentence2": "d", "score": 0.5}, ("e", "f", 4.0)]
    # x = [3, 1, 2], y = [5, 0.5, 4]: deviations [1, -1, 0] and [11/6, -16/6, 5/6].
    pearson = (11 / 6 + 16 / 6) / (np.sqrt(2) * np.sqrt((121 + 256 + 25) / 36))
    assert CorrelationEvaluator(data)(model) == pytest.approx({"pearson": pearson, "spearman": 1.0})


def test_symmetric_evaluators_average_both_orders():
    table = {("a", "b"): [3.0], ("b", "a"): [0.0], ("c", "d"): [1.0], ("d", "c"): [1.0], ("e", "f"): [2.0],
             ("f", "e"): [2.0]}
    data = [("a", "b", 1.0), ("c", "d", 0.0), ("e", "f", 2.0)]
    # Gold ranks 2, 1, 3. One order gives 3, 1, 2 (ranks 3, 1, 2: Spearman 0.5); averaged 1.5, 1, 2 (Spearman 1).
    assert CorrelationEvaluator(data)(StubModel(table))["spearman"] == pytest.approx(0.5)
    assert CorrelationEvaluator(data, symmetric=True)(StubModel(table))["spearman"] == pytest.approx(1.0)
    # ("a", "b") reads 3 one way and -5 the other: positive in one order, negative (-1) averaged.
    table[("b", "a")] = [-5.0]
    labels = [("a", "b", 0), ("e", "f", 1)]
    assert ClassificationEvaluator(labels)(StubModel(table))["accuracy"] == 0.5
    assert ClassificationEvaluator(labels, symmetric=True)(StubModel(table))["accuracy"] == 1.0


def test_classification_evaluator_binary_one_label_model_thresholds_logit_at_zero():
    model = StubModel({("a", "b"): [2.0], ("c", "d"): [-0.5], ("e", "f"): [0.3], ("g", "h"): [-3.0]})
    data = [("a", "b", 1), ("c", "d", 1), ("e", "f", 0), ("g", "h", 0)]
    m = ClassificationEvaluator(data)(model)
    assert m["accuracy"] == 0.5
    assert m["f1"] == pytest.approx(0.5)
    # Ranked by score: pos (2.0), neg (0.3), pos (-0.5) -> AP = (1 + 2/3) / 2.
    assert m["average_precision"] == pytest.approx((1 + 2 / 3) / 2)


def test_classification_evaluator_maps_label_names_case_insensitively():
    names = {0: "contradiction", 1: "entailment", 2: "neutral"}
    model = StubModel({("a", "b"): [0.0, 3.0, 1.0], ("c", "d"): [2.0, 0.0, 1.0]}, id2label=names)
    m = ClassificationEvaluator([("a", "b", "ENTAILMENT"), ("c", "d", "neutral")])(model)
    assert m == {"accuracy": 0.5, "macro_f1": pytest.approx((1 + 0 + 0) / 3)}


def test_classification_evaluator_unknown_label_is_a_clear_error():
    model = StubModel({("a", "b"): [0.0, 1.0, 2.0]}, id2label={0: "contradiction", 1: "entailment", 2: "neutral"})
    with pytest.raises(ValueError, match=r"data\[0\]: label 'maybe' is not one of the model's labels"):
        ClassificationEvaluator([("a", "b", "maybe")])(model)


def test_reranking_evaluator_groups_candidates_per_query():
    table = {("q1", "p"): [0.1], ("q1", "n1"): [0.9], ("q1", "n2"): [0.0],
             ("q2", "a"): [0.5], ("q2", "b"): [0.7]}
    data = [("q1", "p", "n1", "n2"), {"query": "q2", "documents": ["a", "b"], "labels": [0, 1]}]
    model = StubModel(table)
    m = RerankingEvaluator(data, at_k=10, recall_at=(1,))(model)
    assert len(model.calls) == 1  # one batched predict call for all queries
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["recall@1"] == pytest.approx(0.5)


def test_reranking_evaluator_groups_labelled_pairs_by_query():
    # `crossencoder mine` writes one (query, passage, label) per line: the pairs of a query form one list.
    table = {("q1", "p"): [0.1], ("q1", "n1"): [0.9], ("q2", "a"): [0.5], ("q2", "b"): [0.7]}
    pairs = [{"query": "q1", "passage": "p", "label": 1}, ("q2", "a", 0.0), ("q1", "n1", 0), ("q2", "b", 1.0)]
    evaluator = RerankingEvaluator(pairs, recall_at=(1,))
    assert [(s.query, s.documents, s.labels) for s in evaluator.samples] == [
        ("q1", ["p", "n1"], [1.0, 0.0]), ("q2", ["a", "b"], [0.0, 1.0])]
    assert evaluator(StubModel(table))["mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    with pytest.raises(ValueError, match=r"data\[1\]: a ranking label must be a number, got 'yes'"):
        RerankingEvaluator([("q", "a", 1), {"query": "q", "passage": "b", "label": "yes"}])


def test_reranking_evaluator_counts_soft_labels_as_relevant_and_keeps_their_order():
    # 0.5 is BEIR grade 1 of 2 as `crossencoder mine --group-size` writes it: relevant, not rounded to 0.
    half = RerankingEvaluator([("q", ["a", "b", "c"], [0.0, 0.5, 0.0])], recall_at=(1,))
    assert half(StubModel({("q", "a"): [0.9], ("q", "b"): [0.5], ("q", "c"): [0.1]}))["mrr@10"] == pytest.approx(0.5)
    graded = RerankingEvaluator([("q", ["a", "b", "c"], [0.5, 1.0, 0.0])])
    integers = RerankingEvaluator([("q", ["a", "b", "c"], [1, 2, 0])])
    best_first = StubModel({("q", "a"): [0.5], ("q", "b"): [0.9], ("q", "c"): [0.1]})
    swapped = StubModel({("q", "a"): [0.9], ("q", "b"): [0.5], ("q", "c"): [0.1]})
    assert graded(best_first)["ndcg@10"] == pytest.approx(1.0)
    # Gains 1 and 2, as for the integer grades: DCG (1 + 2 / log2(3)) / IDCG (2 + 1 / log2(3)).
    expected = (1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3))
    assert graded(swapped)["ndcg@10"] == pytest.approx(expected) == integers(swapped)["ndcg@10"]


def test_reranking_evaluator_needs_a_positive():
    with pytest.raises(ValueError, match="relevant document"):
        RerankingEvaluator([("q", ["a"], [0])])


def test_sample_parsing_names_the_bad_example():
    with pytest.raises(ValueError, match=r"data\[2\] has 2 documents but 1 labels"):
        to_ranking_sample(("q", ["a", "b"], [1]), 2)
    with pytest.raises(TypeError, match=r"data\[1\] text_b must be a str"):
        to_labelled_pair(("a", 3, 1.0), 1)
    with pytest.raises(ValueError, match=r"data\[0\] is missing a field"):
        to_labelled_pair({"text_a": "a", "label": 1}, 0)


def test_evaluators_run_on_a_real_model(tiny_model_dir, tiny_nli_model_dir):
    model = CrossEncoder(tiny_model_dir)
    data = [("a cat", "a cat sits", 5.0), ("a cat", "the market", 0.0), ("a dog", "a dog runs", 4.0)]
    logits = model.predict([(a, b) for a, b, _ in data], activation_fn=lambda x: x)
    expected = np.corrcoef(logits, [5.0, 0.0, 4.0])[0, 1]
    assert CorrelationEvaluator(data)(model)["pearson"] == pytest.approx(expected, abs=1e-5)
    nli = CrossEncoder(tiny_nli_model_dir)
    pairs = [("a man eats", "someone eats"), ("a man eats", "nobody eats")]
    predicted = nli.predict_labels(pairs)
    m = ClassificationEvaluator([(a, b, label) for (a, b), label in zip(pairs, predicted)])(nli)
    assert m["accuracy"] == 1.0


def test_reranking_evaluator_does_not_reward_a_constant_model():
    # (query, positive, negatives...) lists the positive first: a model that scores every pair alike must not get
    # it ranked first for free.
    data = [("q1", "p", "n1", "n2"), ("q2", "p2", "m1", "m2")]
    table = {(q, d): [0.0] for q, *docs in data for d in docs}
    m = RerankingEvaluator(data, recall_at=(1,))(StubModel(table))
    assert m["mrr@10"] == pytest.approx(1 / 3) and m["recall@1"] == 0.0


def test_classification_evaluator_reports_the_same_metrics_whatever_a_multiclass_model_predicts():
    names = {0: "contradiction", 1: "entailment", 2: "neutral"}
    model = StubModel({("a", "b"): [3.0, 0.0, 1.0], ("c", "d"): [0.0, 3.0, 1.0]}, id2label=names)
    assert set(ClassificationEvaluator([("a", "b", 0), ("c", "d", 1)])(model)) == {"accuracy", "macro_f1"}


def test_reranking_evaluator_refuses_a_bad_cutoff_before_any_scoring():
    # Found only at the first evaluation, a bad cut-off would stop a training run after its first epoch.
    with pytest.raises(ValueError, match="at_k must be a positive integer, got 0"):
        RerankingEvaluator([("q", "relevant", "other")], at_k=0)
    with pytest.raises(ValueError, match="recall_at must hold positive integers, got -5"):
        RerankingEvaluator([("q", "relevant", "other")], recall_at=(1, -5))


BINARY = {("a", "b"): [2.0], ("c", "d"): [-0.5], ("e", "f"): [0.3]}
NLI = {0: "contradiction", 1: "entailment", 2: "neutral"}


@pytest.mark.parametrize("evaluator, model", [
    (CorrelationEvaluator([("a", "b", 1.0), ("c", "d", 0.0), ("e", "f", 0.5)]), StubModel(BINARY)),
    (CorrelationEvaluator([("a", "b", 1.0), ("c", "d", 0.0)], symmetric=True),
     StubModel({**BINARY, ("b", "a"): [1.0], ("d", "c"): [0.0]})),
    # Binary: a 1-label model, and a 2-label one; average precision needs both classes among the gold labels.
    (ClassificationEvaluator([("a", "b", 1), ("c", "d", 0)]), StubModel(BINARY)),
    (ClassificationEvaluator([("a", "b", 1), ("c", "d", 1)]), StubModel(BINARY)),
    (ClassificationEvaluator([("a", "b", "yes"), ("c", "d", "NO")]),
     StubModel({("a", "b"): [0.0, 1.0], ("c", "d"): [1.0, 0.0]}, id2label={0: "no", 1: "yes"})),
    (ClassificationEvaluator([("a", "b", "entailment"), ("c", "d", "entailment")]),
     StubModel({("a", "b"): [0.0, 1.0, 2.0], ("c", "d"): [1.0, 0.0, 0.0]}, id2label=NLI)),
    (RerankingEvaluator([("q", "a", "b")]), StubModel({("q", "a"): [1.0], ("q", "b"): [0.0]})),
    (RerankingEvaluator([("q", "a", "b")], at_k=3, recall_at=(2, 1, 2)),
     StubModel({("q", "a"): [1.0], ("q", "b"): [0.0]})),
], ids=["correlation", "correlation-symmetric", "binary-1-label", "binary-one-class", "binary-2-labels",
        "3-classes", "reranking", "reranking-cutoffs"])
def test_metric_names_are_the_keys_returned_and_need_no_scoring(evaluator, model):
    # The trainer checks metric_for_best_model against these before the first step.
    names = evaluator.metric_names(model)
    assert model.calls == []
    assert names == list(evaluator(model))


def test_metric_names_follow_the_settings_that_change_them():
    assert RerankingEvaluator([("q", "a", "b")], at_k=3, recall_at=(2, 1, 2)).metric_names(
        StubModel({("q", "a"): [1.0]})) == ["mrr@3", "ndcg@3", "map", "recall@2", "recall@1"]
    binary = ClassificationEvaluator([("a", "b", 1), ("c", "d", 0)])
    assert binary.metric_names(StubModel(BINARY)) == ["accuracy", "macro_f1", "f1", "average_precision"]
    three = StubModel({("a", "b"): [0.0, 1.0, 2.0]}, id2label=NLI)
    assert binary.metric_names(three) == ["accuracy", "macro_f1"]


def test_metric_names_refuse_a_model_the_evaluator_cannot_evaluate():
    nli = StubModel({("a", "b"): [0.0, 1.0, 2.0]}, id2label=NLI)
    with pytest.raises(ValueError, match=r"data\[1\]: label 'maybe' is not one of the model's labels"):
        ClassificationEvaluator([("a", "b", "neutral"), ("a", "b", "maybe")]).metric_names(nli)
    with pytest.raises(ValueError, match=r"data\[0\]: label 3 is outside 0..2"):
        ClassificationEvaluator([("a", "b", 3)]).metric_names(nli)
    with pytest.raises(ValueError, match="CorrelationEvaluator needs a 1-label model; this one has 3 labels"):
        CorrelationEvaluator([("a", "b", 1.0), ("a", "b", 0.0)]).metric_names(nli)
    assert nli.calls == []
