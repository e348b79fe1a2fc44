"""Parity with sentence-transformers (test-only oracle): same folder -> same scores, both ways of saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

sentence_transformers = pytest.importorskip("sentence_transformers")
from sentence_transformers import CrossEncoder as STCrossEncoder  # noqa: E402

from crossencoder import CrossEncoder  # noqa: E402

QUERY = "How many people live in Berlin?"
PASSAGES = [
    "Berlin had a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers.",
    "Berlin is well known for its museums.",
    "In 2014, the city state Berlin had 37,368 live births (+6.6%), a record number since 1991.",
    "The urban area of Berlin comprised about 4.1 million people in 2014, making it the seventh most populous "
    "urban area in the European Union.",
    "",
    "Berlin " * 300,  # longer than every model window here: exercises truncation
]
PAIRS = [(QUERY, p) for p in PASSAGES] + [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("A woman is playing violin.", "A man is driving a car."),
]
ATOL = 1e-5


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.mark.parametrize("activation", [None, torch.nn.Identity()])
def test_one_label_scores_match(tiny_model_dir, activation):
    ours, theirs = CrossEncoder(tiny_model_dir), STCrossEncoder(str(tiny_model_dir))
    assert _max_diff(ours.predict(PAIRS, activation_fn=activation),
                     theirs.predict(PAIRS, activation_fn=activation)) < ATOL


@pytest.mark.parametrize("softmax", [False, True])
def test_three_label_scores_match(tiny_nli_model_dir, softmax):
    ours, theirs = CrossEncoder(tiny_nli_model_dir), STCrossEncoder(str(tiny_nli_model_dir))
    a = ours.predict(PAIRS, apply_softmax=softmax)
    b = theirs.predict(PAIRS, apply_softmax=softmax)
    assert a.shape == b.shape == (len(PAIRS), 3)
    assert _max_diff(a, b) < ATOL
    assert ours.predict(PAIRS[0]).shape == theirs.predict(PAIRS[0]).shape == (3,)


def test_max_length_truncation_matches(tiny_model_dir):
    ours, theirs = CrossEncoder(tiny_model_dir, max_length=24), STCrossEncoder(str(tiny_model_dir), max_length=24)
    assert _max_diff(ours.predict(PAIRS), theirs.predict(PAIRS)) < ATOL


def test_rank_order_matches(tiny_model_dir):
    ours, theirs = CrossEncoder(tiny_model_dir), STCrossEncoder(str(tiny_model_dir))
    a, b = ours.rank(QUERY, PASSAGES), theirs.rank(QUERY, PASSAGES)
    assert [h["corpus_id"] for h in a] == [h["corpus_id"] for h in b]
    assert _max_diff([h["score"] for h in a], [h["score"] for h in b]) < ATOL


@pytest.mark.parametrize("activation", [torch.nn.Sigmoid(), torch.nn.Identity()])
def test_saved_by_us_loads_in_sentence_transformers(tiny_model_dir, tmp_path, activation):
    ours = CrossEncoder(tiny_model_dir, activation_fn=activation)
    ours.save(tmp_path / "ours")
    theirs = STCrossEncoder(str(tmp_path / "ours"))
    assert type(theirs.activation_fn) is type(activation)
    assert _max_diff(ours.predict(PAIRS), theirs.predict(PAIRS)) < ATOL


@pytest.mark.parametrize("activation", [torch.nn.Sigmoid(), torch.nn.Identity()])
def test_saved_by_sentence_transformers_loads_in_ours(tiny_model_dir, tmp_path, activation):
    theirs = STCrossEncoder(str(tiny_model_dir), activation_fn=activation)
    theirs.save(str(tmp_path / "theirs"))
    ours = CrossEncoder(tmp_path / "theirs")
    assert type(ours.activation_fn) is type(activation)
    assert _max_diff(ours.predict(PAIRS), theirs.predict(PAIRS)) < ATOL


def test_saved_folder_loads_in_plain_transformers(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ours = CrossEncoder(tiny_model_dir, activation_fn=torch.nn.Identity())
    ours.save(tmp_path / "m")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    short = PAIRS[:4]
    with torch.no_grad():
        logits = model(**tokenizer([a for a, _ in short], [b for _, b in short], padding=True,
                                   return_tensors="pt")).logits[:, 0]
    assert _max_diff(logits.numpy(), ours.predict(short)) < ATOL


def test_real_minilm_weights_match(minilm_model_dir):
    """all-MiniLM-L6-v2 weights + seeded 1-label head (ms-marco-MiniLM-L6-v2's architecture) on real sentences."""
    ours, theirs = CrossEncoder(minilm_model_dir), STCrossEncoder(str(minilm_model_dir))
    for activation in (None, torch.nn.Identity()):
        diff = _max_diff(ours.predict(PAIRS, activation_fn=activation), theirs.predict(PAIRS, activation_fn=activation))
        print(f"MiniLM parity, activation={activation}: max abs diff {diff:.2e}")
        assert diff < ATOL
    assert [h["corpus_id"] for h in ours.rank(QUERY, PASSAGES)] == [h["corpus_id"] for h in theirs.rank(QUERY, PASSAGES)]


def test_max_length_set_after_loading_is_saved_for_sentence_transformers(tiny_model_dir, tmp_path):
    ours = CrossEncoder(tiny_model_dir)
    ours.max_length = 24
    ours.save(tmp_path / "ours")
    theirs = STCrossEncoder(str(tmp_path / "ours"))
    assert theirs.max_seq_length == 24
    assert _max_diff(ours.predict(PAIRS), theirs.predict(PAIRS)) < ATOL


def test_model_kwargs_precision_matches(tiny_model_dir):
    kwargs = {"model_kwargs": {"torch_dtype": torch.bfloat16}}
    ours, theirs = CrossEncoder(tiny_model_dir, **kwargs), STCrossEncoder(str(tiny_model_dir), **kwargs)
    assert _max_diff(ours.predict(PAIRS), theirs.predict(PAIRS)) < ATOL

