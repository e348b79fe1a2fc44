"""Hard-negative mining with a deterministic stand-in bi-encoder (the real one is the retrieval package's)."""

from __future__ import annotations

import numpy as np
import pytest

from crossencoder.training import flatten_ranking, group_pairs, mine_hard_negatives


class VectorEncoder:
    """Embeds each text as a fixed vector from a table (normalised), like BiEncoder.encode."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table
        self.calls = []

    def encode(self, texts, batch_size=64, show_progress_bar=None, normalize=True):
        self.calls.append(list(texts))
        vectors = np.array([self.table[t] for t in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if normalize else vectors


# Cosine with the query [1, 0] falls as the angle grows: pos 0.995 > near 0.98 > mid 0.89 > far 0.45 > off 0.
TABLE = {
    "query": [1.0, 0.0], "pos": [1.0, 0.1], "near": [1.0, 0.2], "mid": [1.0, 0.5], "far": [1.0, 2.0],
    "off": [0.0, 1.0],
}


def test_negatives_are_the_top_non_positives_in_order():
    encoder = VectorEncoder(TABLE)
    out = mine_hard_negatives(["query"], ["pos"], corpus=["off", "far", "mid", "near", "pos"], bi_encoder=encoder,
                              num_negatives=3)
    assert out == [("query", "pos", "near", "mid", "far")]
    assert encoder.calls[0] == ["off", "far", "mid", "near", "pos"]  # corpus embedded once, no duplicates


def test_skip_top_margin_and_max_score_filter_likely_false_negatives():
    corpus = ["off", "far", "mid", "near"]
    enc = VectorEncoder(TABLE)
    assert mine_hard_negatives(["query"], ["pos"], corpus, enc, num_negatives=2, skip_top=1) == [
        ("query", "pos", "mid", "far")]
    # Keep only candidates at least 0.05 below the positive's similarity (0.995): "near" (0.98) goes.
    assert mine_hard_negatives(["query"], ["pos"], corpus, enc, num_negatives=2, margin=0.05) == [
        ("query", "pos", "mid", "far")]
    assert mine_hard_negatives(["query"], ["pos"], corpus, enc, num_negatives=5, max_score=0.5) == [
        ("query", "pos", "far", "off")]


def test_several_positives_per_query_are_never_negatives():
    out = mine_hard_negatives(["query"], [["pos", "near"]], corpus=["mid", "far"], bi_encoder=VectorEncoder(TABLE),
                              num_negatives=1)
    assert out == [("query", "pos", "mid"), ("query", "near", "mid")]


def test_top_k_bounds_the_candidates():
    out = mine_hard_negatives(["query"], ["pos"], corpus=["near", "mid", "far", "off"],
                              bi_encoder=VectorEncoder(TABLE), num_negatives=5, top_k=2)
    assert out == [("query", "pos", "near", "mid")]


def test_input_errors():
    enc = VectorEncoder(TABLE)
    with pytest.raises(ValueError, match="2 queries but 1 positive"):
        mine_hard_negatives(["query", "query"], ["pos"], ["far"], enc)
    with pytest.raises(ValueError, match=r"positives\[0\]"):
        mine_hard_negatives(["query"], [[]], ["far"], enc)
    # A float count failed with "slice indices must be integers" after every text was embedded.
    with pytest.raises(ValueError, match="num_negatives must be an integer >= 1, got 1.5"):
        mine_hard_negatives(["query"], ["pos"], ["far"], enc, num_negatives=1.5)
    with pytest.raises(ValueError, match="skip_top must be an integer >= 0, got -1"):
        mine_hard_negatives(["query"], ["pos"], ["far"], enc, skip_top=-1)
    assert enc.calls == []


def test_counts_may_be_numpy_integers():
    # np.int64(2) was refused with "num_negatives must be an integer >= 1, got 2"; check_cutoffs takes it.
    out = mine_hard_negatives(["query"], ["pos"], corpus=["off", "far", "mid", "near"], bi_encoder=VectorEncoder(TABLE),
                              num_negatives=np.int64(2), top_k=np.int32(3), skip_top=np.int64(1))
    assert out == [("query", "pos", "mid", "far")]
    with pytest.raises(ValueError, match="num_negatives must be an integer >= 1, got np.True_|got True"):
        mine_hard_negatives(["query"], ["pos"], ["far"], VectorEncoder(TABLE), num_negatives=np.bool_(True))


def test_mining_for_no_queries_returns_nothing():
    # It failed with "max() arg is an empty sequence" after embedding the whole corpus.
    enc = VectorEncoder(TABLE)
    assert mine_hard_negatives([], [], ["far", "near"], enc) == [] and enc.calls == []


@pytest.mark.parametrize("label", ["high", float("nan"), None])
def test_group_pairs_refuses_a_label_that_is_not_a_number(label):
    # A NaN label is neither above nor at the query's lowest label: its query vanished from the output unannounced.
    with pytest.raises(ValueError, match=r"pairs\[1\] label must be a finite number"):
        group_pairs([("q", "a", 1.0), ("q", "b", label), ("q", "c", 0.0)])


def test_flatten_ranking_for_pointwise_losses():
    assert flatten_ranking([("q", "pos", "neg"), ("q2", ["a", "b"], [0, 2])]) == [
        ("q", "pos", 1.0), ("q", "neg", 0.0), ("q2", "a", 0.0), ("q2", "b", 2.0)]


def test_group_pairs_is_the_inverse_of_flatten_ranking():
    pairs = [("q1", f"d{i}", float(i % 3)) for i in range(10)] + [("q2", "x", 1.0), ("q2", "y", 1.0), ("q3", "z", 0.0)]
    groups = group_pairs(pairs, group_size=4, seed=3)
    assert [len(docs) for q, docs, _ in groups if q == "q1"] == [4, 3, 3]  # 10 pairs dealt into 3 lists of <= 4
    assert sorted(flatten_ranking(groups)) == sorted(pairs[:10])  # q2: equal labels, q3: one document -> dropped
    assert groups == group_pairs(pairs, group_size=4, seed=3) != group_pairs(pairs, group_size=4, seed=4)
    with pytest.raises(ValueError, match="at least 2"):
        group_pairs(pairs, group_size=1)



def test_group_pairs_keeps_every_negative_when_positives_are_few():
    pairs = [("q", "pos", 1.0)] + [("q", f"neg{i}", 0.0) for i in range(11)]
    groups = group_pairs(pairs, group_size=4, seed=0)
    # 3 lists of 4 would leave 2 without the positive (the old code dropped them, 8 of 11 negatives with them):
    # the positive is reused instead, one per list, next to at most 3 negatives.
    assert [len(docs) for _, docs, _ in groups] == [4, 4, 4, 3]
    assert all(docs.count("pos") == 1 for _, docs, _ in groups)
    negatives = [d for _, docs, _ in groups for d in docs if d != "pos"]
    assert sorted(negatives) == sorted(f"neg{i}" for i in range(11))


def test_group_pairs_uses_each_pair_once_when_every_list_can_mix_labels():
    pairs = [("q", f"pos{i}", 0.5 + i / 4) for i in range(3)] + [("q", f"neg{i}", 0.0) for i in range(9)]
    groups = group_pairs(pairs, group_size=4, seed=1)
    assert sorted(flatten_ranking(groups)) == sorted(pairs)  # every pair exactly once
    assert all(sum(label > 0 for label in labels) == 1 for _, _, labels in groups)
    # The rarer kind is reused even when it is the negatives: one negative per list, every positive once.
    pairs = [("q", f"pos{i}", 1.0) for i in range(10)] + [("q", "neg", 0.0)]
    groups = group_pairs(pairs, group_size=4, seed=1)
    assert all(docs.count("neg") == 1 and len(docs) <= 4 for _, docs, _ in groups)
    assert sorted(d for _, docs, _ in groups for d in docs if d != "neg") == sorted(f"pos{i}" for i in range(10))
