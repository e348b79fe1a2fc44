"""Long documents: overlapping windows, aggregation, and which window scored best."""

from __future__ import annotations

import numpy as np
import pytest

from crossencoder import CrossEncoder
from crossencoder.model.windows import aggregate, split_into_windows

QUERY = "berlin population"
LONG_DOC = " ".join(f"word{i % 50} filler" for i in range(300)) + " berlin population is large " + "end " * 100


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return CrossEncoder(tiny_model_dir)


def test_windows_cover_the_document_with_overlap(model):
    windows = split_into_windows(model.tokenizer, QUERY, [LONG_DOC, "short"], model.max_length, stride=10)
    assert windows.doc_index.count(1) == 1 and windows.doc_index[-1] == 1
    first_doc = [e["input_ids"] for e, d in zip(windows.encodings, windows.doc_index) if d == 0]
    assert len(first_doc) > 3 and all(len(ids) <= model.max_length for ids in first_doc)
    spans = [s for s, d in zip(windows.spans, windows.doc_index) if d == 0]
    assert spans[0][0] == 0 and spans[-1][1] == len(LONG_DOC.rstrip())
    assert all(s1[0] < s2[0] < s1[1] for s1, s2 in zip(spans, spans[1:]))  # overlapping, in order
    for s1, s2 in zip(spans, spans[1:]):  # the overlap holds at least `stride` tokens
        assert len(model.tokenizer(LONG_DOC[s2[0]:s1[1]], add_special_tokens=False)["input_ids"]) >= 10


def test_first_equals_truncation_and_max_bounds_mean(model):
    docs = [LONG_DOC, "berlin has many people", ""]
    plain = {h["corpus_id"]: h["score"] for h in model.rank(QUERY, docs)}
    first = {h["corpus_id"]: h["score"] for h in model.rank(QUERY, docs, long_documents="first")}
    best = {h["corpus_id"]: h for h in model.rank(QUERY, docs, long_documents="max")}
    mean = {h["corpus_id"]: h["score"] for h in model.rank(QUERY, docs, long_documents="mean")}
    for i in range(len(docs)):
        assert first[i] == pytest.approx(plain[i], abs=1e-5)
        assert best[i]["score"] >= mean[i] - 1e-6
    assert best[1]["score"] == pytest.approx(plain[1], abs=1e-5) and best[1]["window"] == 0


def test_best_window_span_reproduces_its_score(model):
    hit = model.rank(QUERY, [LONG_DOC], long_documents="max", return_documents=True)[0]
    start, end = hit["window_span"]
    alone = model.predict((QUERY, LONG_DOC[start:end]))
    assert alone == pytest.approx(hit["score"], abs=1e-5)
    assert hit["text"] == LONG_DOC


def test_window_errors(model):
    with pytest.raises(ValueError, match="query"):
        model.rank("berlin " * 200, [LONG_DOC], long_documents="max")
    with pytest.raises(ValueError, match="stride"):
        model.rank(QUERY, [LONG_DOC], long_documents="max", stride=10_000)
    with pytest.raises(ValueError, match="long_documents"):
        model.rank(QUERY, [LONG_DOC], long_documents="median")
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(np.zeros(2), [0, 1], 2, "median")


def test_aggregate_by_hand():
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.7])
    doc_scores, best = aggregate(scores, [0, 0, 0, 1, 1], 2, "mean")
    np.testing.assert_allclose(doc_scores, [0.5, 0.5], atol=1e-6)
    assert best == [1, 1]
    assert aggregate(scores, [0, 0, 0, 1, 1], 2, "first")[0].tolist() == pytest.approx([0.1, 0.3])
