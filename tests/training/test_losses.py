"""Losses: values against hand-computed cases, input validation, and that each one trains a toy task."""

from __future__ import annotations

import math

import pytest
import torch

from crossencoder import CrossEncoder
from crossencoder.training.losses import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    ListNetLoss,
    MarginMSELoss,
    MSELoss,
    MultipleNegativesRankingLoss,
    get_loss,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def logits(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(len(values), -1)


# ---------------------------------------------------------------- hand-computed values
def test_bce_soft_labels_hand_computed():
    loss = BinaryCrossEntropyLoss()
    pairs, targets = loss.prepare([loss.normalize(("a", "b", 0.8), 0), loss.normalize(("c", "d", 0), 1)])
    assert pairs == [("a", "b"), ("c", "d")]
    value = loss.compute(logits(2.0, -1.0), **targets)
    expected = -(0.8 * math.log(sigmoid(2)) + 0.2 * math.log(1 - sigmoid(2)) + math.log(1 - sigmoid(-1))) / 2
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_bce_pos_weight_scales_positive_term():
    value = BinaryCrossEntropyLoss(pos_weight=3.0).compute(logits(0.5), labels=torch.tensor([1.0]))
    assert value.item() == pytest.approx(-3 * math.log(sigmoid(0.5)), rel=1e-6)


def test_cross_entropy_hand_computed_with_label_names(tiny_nli_model_dir):
    loss = CrossEntropyLoss()
    loss.check_model(CrossEncoder(tiny_nli_model_dir))
    batch = [loss.normalize(("a", "b", "Entailment"), 0), loss.normalize({"premise": "c", "hypothesis": "d",
                                                                       "label": 2}, 1)]
    _, targets = loss.prepare(batch)
    assert targets["labels"].tolist() == [1, 2]  # NLI_LABELS: 0 contradiction, 1 entailment, 2 neutral
    value = loss.compute(logits([1.0, 2.0, 0.0], [0.0, 0.0, 0.0]).reshape(2, 3), **targets)
    first = -math.log(math.exp(2) / (math.exp(1) + math.exp(2) + 1))
    assert value.item() == pytest.approx((first + math.log(3)) / 2, rel=1e-6)


def test_mse_hand_computed():
    loss = MSELoss()
    _, targets = loss.prepare([loss.normalize(("a", "b", 3.0), 0), loss.normalize(("c", "d", -1.0), 1)])
    assert loss.compute(logits(1.0, 0.0), **targets).item() == pytest.approx((4 + 1) / 2)


def test_margin_mse_hand_computed():
    loss = MarginMSELoss()
    batch = [loss.normalize(("q1", "p1", "n1", 4.0), 0),
             loss.normalize({"query": "q2", "positive": "p2", "negative": "n2", "margin": 1.0}, 1)]
    pairs, targets = loss.prepare(batch)
    assert pairs == [("q1", "p1"), ("q2", "p2"), ("q1", "n1"), ("q2", "n2")]
    # Student margins: 3 - 1 = 2 (teacher 4) and 0 - 0.5 = -0.5 (teacher 1).
    value = loss.compute(logits(3.0, 0.0, 1.0, 0.5), **targets)
    assert value.item() == pytest.approx(((2 - 4) ** 2 + (-0.5 - 1) ** 2) / 2)


def test_mnrl_builds_in_batch_negatives_and_matches_hand_value():
    loss = MultipleNegativesRankingLoss()
    batch = [loss.normalize(("q1", "p1", "h1"), 0), loss.normalize({"query": "q2", "positive": "p2"}, 1)]
    pairs, targets = loss.prepare(batch)
    assert pairs == [("q1", "p1"), ("q1", "h1"), ("q1", "p2"), ("q2", "p2"), ("q2", "p1")]
    assert targets["group_sizes"].tolist() == [3, 2]
    value = loss.compute(logits(2.0, 1.0, 0.0, 0.5, 1.5), **targets)
    q1 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
    q2 = -math.log(math.exp(0.5) / (math.exp(0.5) + math.exp(1.5)))
    assert value.item() == pytest.approx((q1 + q2) / 2, rel=1e-6)


def test_mnrl_limits_in_batch_negatives_and_skips_duplicate_positives():
    loss = MultipleNegativesRankingLoss(num_in_batch_negatives=1)
    batch = [loss.normalize(x, i) for i, x in enumerate([("q1", "p"), ("q2", "p"), ("q3", "x"), ("q4", "y")])]
    pairs, targets = loss.prepare(batch)
    # q1's only other candidates are "p" (same text as its positive: skipped), "x" and "y"; limit 1 keeps "x".
    assert pairs[:2] == [("q1", "p"), ("q1", "x")]
    assert targets["group_sizes"].tolist() == [2, 2, 2, 2]


def test_mnrl_uses_best_labelled_document_as_positive():
    sample = MultipleNegativesRankingLoss().normalize(("q", ["n1", "p", "n2"], [0, 2, 0]), 0)
    assert sample.documents == ["p", "n1", "n2"]


@pytest.mark.parametrize("examples, batch_size, loss", [
    ([("q1", "p1"), ("q2", "p2")], 1, MultipleNegativesRankingLoss()),
    ([("q1", "p1"), ("q2", "p2")], 8, MultipleNegativesRankingLoss(num_in_batch_negatives=0)),
    ([("q1", "p"), ("q2", "p")], 8, MultipleNegativesRankingLoss()),  # one positive text: never a negative
])
def test_mnrl_that_can_never_see_a_negative_is_refused(examples, batch_size, loss):
    batch = [loss.normalize(x, i) for i, x in enumerate(examples)]
    # The softmax over the positive alone is 1: the loss is exactly 0 and nothing would train.
    assert loss.compute(logits(0.3), **loss.prepare(batch[:1])[1]).item() == 0.0
    with pytest.raises(ValueError, match="no negative for any query.*Use batch_size >= 2, add hard negatives"):
        loss.check_data(batch, batch_size)


@pytest.mark.parametrize("examples, batch_size", [
    ([("q1", "p1", "h1"), ("q2", "p2")], 1),  # a hard negative somewhere: that query trains
    ([("q1", "p1"), ("q2", "p2")], 2),  # in-batch negatives
])
def test_mnrl_that_can_see_a_negative_is_accepted(examples, batch_size):
    loss = MultipleNegativesRankingLoss()
    loss.check_data([loss.normalize(x, i) for i, x in enumerate(examples)], batch_size)


def test_mnrl_warns_once_about_a_query_alone_in_its_batch(caplog):
    loss = MultipleNegativesRankingLoss()
    batch = [loss.normalize(x, i) for i, x in enumerate([("q1", "p1"), ("q2", "p2"), ("q3", "p3")])]
    with caplog.at_level("WARNING", logger="crossencoder.training.losses"):
        loss.prepare(batch[:2])
        assert not caplog.records
        loss.prepare(batch[2:])  # e.g. the last batch of an epoch of 3 examples in batches of 2
        loss.prepare(batch[2:])
    assert len(caplog.records) == 1 and "a query with no negative" in caplog.text


def test_listnet_hand_computed_with_ragged_lists():
    loss = ListNetLoss()
    batch = [loss.normalize(("q1", ["a", "b"], [1, 0]), 0), loss.normalize(("q2", ["c", "d", "e"], [0, 0, 0]), 1)]
    pairs, targets = loss.prepare(batch)
    assert len(pairs) == 5
    value = loss.compute(logits(1.0, 0.0, 0.0, 0.0, 0.0), **targets)
    # q1: target softmax([1, 0]) = [e/(e+1), 1/(e+1)], scores softmax([1, 0]) identical -> entropy of it.
    p = math.e / (math.e + 1)
    q1 = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    q2 = math.log(3)  # uniform vs uniform over 3
    assert value.item() == pytest.approx((q1 + q2) / 2, rel=1e-6)


# ---------------------------------------------------------------- validation
def test_bce_rejects_unscaled_scores_naming_the_example():
    with pytest.raises(ValueError, match=r"data\[3\].*outside \[0, 1\]"):
        BinaryCrossEntropyLoss().normalize(("a", "b", 4.2), 3)


def test_ranking_loss_without_positive_is_an_error():
    with pytest.raises(ValueError, match="no positive"):
        MultipleNegativesRankingLoss().normalize(("q", ["a", "b"], [0, 0]), 0)


@pytest.mark.parametrize("loss, example", [
    (MSELoss(), ("a", "b", float("nan"))),
    (MSELoss(), ("a", "b", [0.5, float("inf")])),
    (MarginMSELoss(), ("q", "p", "n", float("inf"))),
    (ListNetLoss(), ("q", ["a", "b"], [float("nan"), 1])),
    (MultipleNegativesRankingLoss(), ("q", ["a", "b"], [1, float("nan")])),
])
def test_non_finite_targets_are_refused_naming_the_example(loss, example):
    # Otherwise the loss is NaN at the first step (or, for MNRL, the document silently drops out).
    with pytest.raises(ValueError, match=r"data\[5\].* not a finite number"):
        loss.normalize(example, 5)


@pytest.mark.parametrize("make, message", [
    (lambda: CrossEntropyLoss(label_smoothing=1.5), "label_smoothing must be in"),
    (lambda: BinaryCrossEntropyLoss(pos_weight=0), "pos_weight must be"),
    (lambda: MultipleNegativesRankingLoss(scale=-1), "scale must be"),
    (lambda: MultipleNegativesRankingLoss(num_in_batch_negatives=-1), "num_in_batch_negatives must be"),
    (lambda: ListNetLoss(label_temperature=float("nan")), "label_temperature must be"),
])
def test_bad_loss_settings_are_refused_up_front(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_head_size_checked(tiny_model_dir, tiny_nli_model_dir):
    with pytest.raises(ValueError, match="num_labels >= 2"):
        CrossEntropyLoss().check_model(CrossEncoder(tiny_model_dir))
    with pytest.raises(ValueError, match="1-label model"):
        BinaryCrossEntropyLoss().check_model(CrossEncoder(tiny_nli_model_dir))


def test_get_loss_names():
    assert isinstance(get_loss("margin-mse"), MarginMSELoss)
    assert isinstance(get_loss("MNRL"), MultipleNegativesRankingLoss)
    with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
        get_loss("hinge")


# ---------------------------------------------------------------- the loss goes down on a toy task
TOY = {
    "bce": [("cats purr", "a cat purrs", 1.0), ("cats purr", "stocks fell", 0.0),
            ("dogs bark", "a dog barks", 1.0), ("dogs bark", "rain is wet", 0.0)],
    "mse": [("cats purr", "a cat purrs", 3.0), ("cats purr", "stocks fell", -2.0),
            ("dogs bark", "a dog barks", 2.0), ("dogs bark", "rain is wet", -3.0)],
    "margin_mse": [("cats purr", "a cat purrs", "stocks fell", 4.0), ("dogs bark", "a dog barks", "rain", 3.0)],
    "mnrl": [("cats purr", "a cat purrs", "stocks fell"), ("dogs bark", "a dog barks", "rain is wet")],
    "listnet": [("cats purr", ["a cat purrs", "stocks fell", "rain"], [2, 0, 1]),
                ("dogs bark", ["rain", "a dog barks"], [0, 1])],
}
# Sharp ListNet targets, so the minimum of the toy loss is near 0 and "halved" is a meaningful bar.
TOY_LOSSES = {"listnet": lambda: ListNetLoss(label_temperature=0.1)}


def _train_steps(model: CrossEncoder, loss, examples, steps: int = 20) -> list[float]:
    loss.check_model(model)
    batch = [loss.normalize(x, i) for i, x in enumerate(examples)]
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=2e-3)
    model.model.eval()  # no dropout: the same batch every step, so the loss curve is deterministic
    values = []
    for _ in range(steps):
        pairs, targets = loss.prepare(batch)
        value = loss.compute(model.model(**model.tokenize(pairs)).logits, **targets)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        values.append(value.item())
    return values


@pytest.mark.parametrize("name", sorted(TOY))
def test_loss_goes_down_on_toy_task(name, tiny_model_dir):
    loss = TOY_LOSSES.get(name, lambda: get_loss(name))()
    values = _train_steps(CrossEncoder(tiny_model_dir), loss, TOY[name])
    assert values[-1] < 0.5 * values[0], values


def test_cross_entropy_goes_down_on_toy_task(tiny_nli_model_dir):
    data = [("a man eats", "a man is eating", "entailment"), ("a man eats", "nobody eats", "contradiction"),
            ("a man eats", "the man is tall", "neutral")]
    values = _train_steps(CrossEncoder(tiny_nli_model_dir), CrossEntropyLoss(), data)
    assert values[-1] < 0.5 * values[0], values
