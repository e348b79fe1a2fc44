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


def _sentencepiece_model(path):
    """A tiny XLM-R-style model: SentencePiece (Unigram) tokens carry their leading space, pairs are
    ``<s> A </s></s> B </s>`` and there are no token_type_ids."""
    import torch
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaTokenizerFast

    corpus = [QUERY, LONG_DOC, "the capital of germany has many museums"]
    spm = SentencePieceUnigramTokenizer()
    spm.train_from_iterator(corpus, vocab_size=120, unk_token="<unk>",
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    spm._tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=spm._tokenizer, model_max_length=48)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=50, pad_token_id=1, type_vocab_size=1)
    XLMRobertaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    return CrossEncoder(_sentencepiece_model(tmp_path_factory.mktemp("tiny-xlmr")))


def test_sentencepiece_windows_score_exactly_their_span(sentencepiece_model):
    model, doc = sentencepiece_model, LONG_DOC
    assert model.tokenizer.num_special_tokens_to_add(pair=True) == 4
    windows = split_into_windows(model.tokenizer, QUERY, [doc], model.max_length, stride=4)
    assert len(windows.spans) > 3
    for encoding, (start, end) in zip(windows.encodings, windows.spans):
        assert set(encoding) == {"input_ids"}
        # The window's tokens are the whole span, untruncated: the reported text is the text that scored.
        alone = model.tokenizer(QUERY, doc[start:end])["input_ids"]
        assert encoding["input_ids"] == alone and len(alone) <= model.max_length
        # Windows begin at a word, not inside one (a word's tail would tokenize as a different word).
        assert start == 0 or doc[start - 1].isspace() or doc[start].isspace()
    assert windows.spans[-1][1] == len(doc.rstrip())


@pytest.mark.parametrize("how", ["max", "first"])
def test_reported_window_is_the_one_whose_score_is_reported(model, how):
    doc = "end " * 100 + LONG_DOC  # the best window is not the first one
    hit = model.rank(QUERY, [doc], long_documents=how)[0]
    start, end = hit["window_span"]
    assert model.predict((QUERY, doc[start:end])) == pytest.approx(hit["score"], abs=1e-5)
    assert (hit["window"] == 0) == (how == "first")


def test_windows_that_must_shrink_below_the_stride_still_move_on():
    from crossencoder.model.windows import _spans

    doc = "a b c d e f g h i j"
    offsets = [(i, i + 1) for i in range(0, len(doc), 2)]
    # Every window re-tokenizes too long, so each shrinks to a single token, fewer than the stride.
    assert _spans(doc, offsets, room=6, stride=4, excess=lambda span: 99) == [(i, i + 1) for i in range(0, 19, 2)]


def test_long_query_with_the_default_stride_still_gets_windows(model):
    # The default stride (max_length // 8 = 16 here) must fit the room a long query leaves (12 tokens), rather
    # than fail on a stride the caller never passed.
    query = "berlin " * (model.max_length - 3 - 12)
    hit = model.rank(query, [LONG_DOC], long_documents="max")[0]
    start, end = hit["window_span"]
    assert model.predict((query, LONG_DOC[start:end])) == pytest.approx(hit["score"], abs=1e-5)
