"""Behaviour of CrossEncoder: shapes, ordering, bad input, truncation, labels, save/load, calibration."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from crossencoder import CrossEncoder

PAIRS = [
    ("How many people live in Berlin?", "Berlin has a population of 3,520,031 registered inhabitants."),
    ("How many people live in Berlin?", "Berlin is well known for its museums."),
    ("What is the capital of France?", "Paris is the capital and most populous city of France."),
    ("short", "a " * 40),
]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return CrossEncoder(tiny_model_dir)


@pytest.fixture(scope="module")
def nli(tiny_nli_model_dir):
    return CrossEncoder(tiny_nli_model_dir)


def test_predict_shapes_and_dtypes(model):
    scores = model.predict(PAIRS)
    assert isinstance(scores, np.ndarray) and scores.shape == (4,) and scores.dtype == np.float32
    assert ((scores > 0) & (scores < 1)).all()  # default Sigmoid for 1 label
    single = model.predict(PAIRS[0])
    assert isinstance(single, np.float32) and single == pytest.approx(scores[0], abs=1e-6)
    tensor = model.predict(PAIRS, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (4,)
    as_list = model.predict(PAIRS, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 4 and isinstance(as_list[0], torch.Tensor)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tensor_result_is_on_the_model_device(tiny_model_dir):
    # sentence-transformers returns convert_to_tensor results on the model's device; code that goes on with
    # GPU tensor maths relies on it.
    assert CrossEncoder(tiny_model_dir, device="cuda").predict(PAIRS, convert_to_tensor=True).device.type == "cuda"


def test_empty_input_returns_empty_of_right_type(model, nli):
    empty = model.predict([])
    assert isinstance(empty, np.ndarray) and empty.shape == (0,) and empty.dtype == np.float32
    assert nli.predict([]).shape == (0, 3)  # a classifier's rows, even when there are none
    assert isinstance(model.predict([], convert_to_tensor=True), torch.Tensor)
    assert model.rank("q", []) == []


def test_order_restored_whatever_the_batching(model):
    reference = np.array([model.predict(p) for p in PAIRS])
    for batch_size, budget in [(1, None), (2, None), (32, 64), (3, 10_000)]:
        got = model.predict(PAIRS, batch_size=batch_size, max_batch_tokens=budget)
        np.testing.assert_allclose(got, reference, atol=1e-5)


def test_empty_strings_are_scored(model):
    scores = model.predict([("", ""), ("query", "")])
    assert np.isfinite(scores).all()


@pytest.mark.parametrize(
    "bad, error, index",
    [
        (None, TypeError, None),
        ("not pairs", TypeError, None),
        ([("a", "b"), ("a", None)], TypeError, "pairs[1][1]"),
        ([("a", "b"), ("a", "b", "c")], ValueError, "pairs[1]"),
        ([("a", "b"), 5], TypeError, "pairs[1]"),
        ([("a", "b"), ("a", 3)], TypeError, "pairs[1][1]"),
        # A lone surrogate (bytes decoded with errors="surrogateescape") failed inside the tokenizer, unnamed.
        ([("a", "b"), ("a", "caf\udce9")], ValueError, "pairs[1][1] is not valid Unicode"),
    ],
)
def test_bad_pairs_name_the_index(model, bad, error, index):
    with pytest.raises(error) as info:
        model.predict(bad)
    if index:
        assert index in str(info.value)


def test_rank_sorted_top_k_and_documents(model):
    docs = [p[1] for p in PAIRS]
    scores = model.predict([(PAIRS[0][0], d) for d in docs])
    hits = model.rank(PAIRS[0][0], docs, return_documents=True)
    assert [h["corpus_id"] for h in hits] == list(np.argsort(-scores, kind="stable"))
    assert all(h["text"] == docs[h["corpus_id"]] for h in hits)
    top = model.rank(PAIRS[0][0], docs, top_k=2)
    assert len(top) == 2 and "text" not in top[0] and top == [{k: h[k] for k in ("corpus_id", "score")} for h in hits[:2]]


def test_rank_is_stable_on_ties(model):
    hits = model.rank("q", ["same", "other", "same", "same"])
    tied = [h["corpus_id"] for h in hits if h["corpus_id"] != 1]
    assert tied == [0, 2, 3]


def test_rank_bad_input(model, nli):
    with pytest.raises(TypeError, match="query"):
        model.rank(None, ["a"])
    with pytest.raises(TypeError, match=r"documents\[1\]"):
        model.rank("q", ["a", 1])
    with pytest.raises(ValueError, match=r"documents\[1\] is not valid Unicode"):
        model.rank("q", ["a", "\ud800"])
    with pytest.raises(ValueError, match="query is not valid Unicode"):
        model.rank("\ud800", ["a"])
    with pytest.raises(ValueError, match="top_k"):
        model.rank("q", ["a"], top_k=0)
    with pytest.raises(ValueError, match="1-label"):
        nli.rank("q", ["a"])


def test_truncation_keeps_query_and_warns_once(model, caplog):
    query = "where is the museum island"
    long_doc = "berlin " * 500
    encoded = model.tokenize([(query, long_doc)])
    assert encoded["input_ids"].shape[1] == model.max_length
    query_ids = model.tokenizer(query, add_special_tokens=False)["input_ids"]
    assert encoded["input_ids"][0, 1 : 1 + len(query_ids)].tolist() == query_ids
    fresh = CrossEncoder(model.model_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        fresh.predict([(query, long_doc)])
        fresh.predict([(query, long_doc)])
    assert sum("truncated" in r.message for r in caplog.records) == 1


def test_big_inputs_are_tokenized_in_chunks_with_the_same_results(model, monkeypatch):
    # Tokenizing a million pairs at once held gigabytes of token lists; chunks must not change any result.
    pairs = [*PAIRS, ("where is the museum island", "berlin " * 500), ("q", "d")] * 2
    whole_scores = model.predict(pairs)
    whole_logits, whole_tokens = model.logits_with_token_counts(pairs)
    whole_rank = model.rank("berlin", [b for _, b in pairs])
    whole_symmetric = model.predict(pairs, symmetric=True)
    import crossencoder.model.cross_encoder as module

    monkeypatch.setattr(module, "_ENCODE_CHUNK", 3)
    encoded: list[int] = []
    real_encode = model._encode
    monkeypatch.setattr(model, "_encode", lambda chunk: encoded.append(len(chunk)) or real_encode(chunk))
    np.testing.assert_allclose(model.predict(pairs), whole_scores, atol=1e-6)
    assert max(encoded) == 3 and sum(encoded) == len(pairs)
    logits, tokens = model.logits_with_token_counts(pairs)
    np.testing.assert_allclose(logits.numpy(), whole_logits.numpy(), atol=1e-6)
    assert tokens == whole_tokens
    assert [h["corpus_id"] for h in model.rank("berlin", [b for _, b in pairs])] == [
        h["corpus_id"] for h in whole_rank]
    np.testing.assert_allclose(model.predict(pairs, symmetric=True), whole_symmetric, atol=1e-6)


def test_logits_with_token_counts_match_predict_and_the_truncated_tokenization(model):
    pairs = [*PAIRS, ("where is the museum island", "berlin " * 500)]
    logits, tokens = model.logits_with_token_counts(pairs)
    assert logits.shape == (len(pairs), 1)
    raw = model.predict(pairs, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(logits[:, 0].numpy(), raw, atol=1e-6)
    expected = model.tokenize(pairs)["attention_mask"].sum(dim=1).tolist()
    assert tokens == expected and tokens[-1] == model.max_length
    empty, none = model.logits_with_token_counts([])
    assert empty.shape == (0, 1) and none == []
    with pytest.raises(TypeError, match=r"pairs\[0\]"):
        model.logits_with_token_counts(["not a pair"])


def test_overlong_query_is_cut_too(model):
    encoded = model.tokenize([("query " * 400, "doc " * 400)])
    assert encoded["input_ids"].shape[1] == model.max_length


def test_activation_override_and_identity(model):
    logits = model.predict(PAIRS, activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(torch.sigmoid(torch.tensor(logits)).numpy(), model.predict(PAIRS), atol=1e-6)


def test_symmetric_averages_the_logits_of_both_orders(model, nli):
    swapped = [(b, a) for a, b in PAIRS]
    identity = torch.nn.Identity()
    forward, backward = model.predict(PAIRS, activation_fn=identity), model.predict(swapped, activation_fn=identity)
    assert not np.allclose(forward, backward, atol=1e-4)  # otherwise the test below proves nothing
    mean = (forward + backward) / 2
    np.testing.assert_allclose(model.predict(PAIRS, symmetric=True, activation_fn=identity), mean, atol=1e-5)
    # The activation comes after the average, and the result no longer depends on the order.
    np.testing.assert_allclose(model.predict(PAIRS, symmetric=True), torch.sigmoid(torch.tensor(mean)).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(model.predict(swapped, symmetric=True), model.predict(PAIRS, symmetric=True),
                               atol=1e-6)
    assert model.predict(PAIRS[0], symmetric=True) == pytest.approx(model.predict(PAIRS, symmetric=True)[0], abs=1e-6)
    assert nli.predict(PAIRS, symmetric=True).shape == (4, 3)


def test_classifier_rows_softmax_and_labels(nli):
    logits = nli.predict(PAIRS)
    assert logits.shape == (4, 3)
    probs = nli.predict(PAIRS, apply_softmax=True)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert nli.predict(PAIRS[0]).shape == (3,)
    labels = nli.predict_labels(PAIRS)
    assert labels == [nli.id2label[i] for i in logits.argmax(axis=1)]
    assert set(labels) <= {"contradiction", "entailment", "neutral"}


def test_predict_labels_needs_classifier(model):
    with pytest.raises(ValueError, match="classifier"):
        model.predict_labels(PAIRS)


def test_save_roundtrip_keeps_scores_and_activation(model, tmp_path):
    model.activation_fn = torch.nn.Identity()
    try:
        model.save(tmp_path / "saved")
        expected = model.predict(PAIRS)
    finally:
        model.activation_fn = torch.nn.Sigmoid()
    reloaded = CrossEncoder(tmp_path / "saved")
    assert isinstance(reloaded.activation_fn, torch.nn.Identity)
    np.testing.assert_allclose(reloaded.predict(PAIRS), expected, atol=1e-6)
    assert reloaded.max_length == model.max_length
    assert (tmp_path / "saved" / "model.safetensors").is_file()


def test_untrusted_activation_path_is_ignored(tiny_model_dir, tmp_path):
    model = CrossEncoder(tiny_model_dir)
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["sentence_transformers"]["activation_fn"] = "os.system"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    (tmp_path / "m" / "config_sentence_transformers.json").unlink()
    assert isinstance(CrossEncoder(tmp_path / "m").activation_fn, torch.nn.Sigmoid)


def test_legacy_activation_key_is_read(tiny_model_dir, tmp_path):
    CrossEncoder(tiny_model_dir).save(tmp_path / "m")
    (tmp_path / "m" / "config_sentence_transformers.json").unlink()
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["sentence_transformers"]
    config["sbert_ce_default_activation_function"] = "torch.nn.modules.linear.Identity"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    assert isinstance(CrossEncoder(tmp_path / "m").activation_fn, torch.nn.Identity)


def test_fresh_head_from_plain_encoder_or_other_head(tiny_nli_model_dir, tmp_path):
    from transformers import AutoTokenizer, BertModel

    BertModel.from_pretrained(tiny_nli_model_dir).save_pretrained(tmp_path / "encoder")
    AutoTokenizer.from_pretrained(tiny_nli_model_dir).save_pretrained(tmp_path / "encoder")
    encoder = CrossEncoder(tmp_path / "encoder", num_labels=1)
    assert encoder.num_labels == 1 and encoder.predict(PAIRS).shape == (4,)
    # A folder with a 3-label head asked for 1 label gets a fresh head instead of a size-mismatch crash.
    relabelled = CrossEncoder(tiny_nli_model_dir, num_labels=1)
    assert relabelled.predict(PAIRS).shape == (4,)


def test_calibrated_scores(model):
    with pytest.raises(ValueError, match="calibrate"):
        model.predict(PAIRS, calibrated=True)
    model.config.crossencoder = {"calibration": {"method": "platt", "a": 2.0, "b": -1.0}}
    try:
        logits = model.predict(PAIRS, activation_fn=torch.nn.Identity())
        np.testing.assert_allclose(model.predict(PAIRS, calibrated=True), 1 / (1 + np.exp(-(2 * logits - 1))), atol=1e-6)
    finally:
        del model.config.crossencoder


def test_invalid_options(tiny_model_dir):
    with pytest.raises(ValueError, match="backend"):
        CrossEncoder(tiny_model_dir, backend="tensorrt")
    with pytest.raises(ValueError, match="dtype"):
        CrossEncoder(tiny_model_dir, dtype="float8")
    # A torch dtype that is not a precision would fail inside torch's Module.to.
    with pytest.raises(ValueError, match="Unsupported dtype torch.int8: use one of float32, float16, bfloat16"):
        CrossEncoder(tiny_model_dir, dtype=torch.int8)
    with pytest.raises(ValueError, match="device"):
        CrossEncoder(tiny_model_dir, device="gpu!")
    with pytest.raises(TypeError, match="activation_fn must be a callable"):
        CrossEncoder(tiny_model_dir, activation_fn="sigmoid")
    model = CrossEncoder(tiny_model_dir)
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(PAIRS, batch_size=0)
    with pytest.raises(TypeError, match="activation_fn must be a callable"):
        model.predict(PAIRS, activation_fn="sigmoid")
    # The class instead of an instance failed on the first predict inside torch ("takes 1 positional argument").
    with pytest.raises(TypeError, match=r"Sigmoid\(\), not the class"):
        CrossEncoder(tiny_model_dir, activation_fn=torch.nn.Sigmoid)


def test_sentence_transformers_3_argument_names_still_work(tiny_model_dir):
    with pytest.warns(DeprecationWarning, match="use activation_fn="):
        legacy = CrossEncoder(tiny_model_dir, default_activation_function=torch.nn.Identity())
    np.testing.assert_allclose(legacy.predict(PAIRS),
                               CrossEncoder(tiny_model_dir).predict(PAIRS, activation_fn=torch.nn.Identity()),
                               atol=1e-6)
    with pytest.warns(DeprecationWarning):
        three = CrossEncoder(tiny_model_dir, automodel_args={"ignore_mismatched_sizes": True},
                             config_args={"num_labels": 3}, tokenizer_args={"model_max_length": 64})
    assert three.num_labels == 3 and three.max_length == 64
    with pytest.raises(TypeError, match="unexpected keyword argument.*max_seq_len"):
        CrossEncoder(tiny_model_dir, max_seq_len=128)


def test_other_sentence_transformers_constructor_names(tiny_model_dir, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # processor_kwargs is sentence-transformers 6's own name: no warning
        assert CrossEncoder(tiny_model_dir, processor_kwargs={"model_max_length": 32}).max_length == 32
    with pytest.warns(DeprecationWarning, match="use model_name_or_path="):
        assert CrossEncoder(model_name=tiny_model_dir).num_labels == 1
    with pytest.warns(DeprecationWarning, match="use cache_folder="):
        assert CrossEncoder(tiny_model_dir, cache_dir=str(tmp_path)).cache_folder == str(tmp_path)
    with pytest.warns(DeprecationWarning, match="classifier_dropout"):
        assert CrossEncoder(tiny_model_dir, classifier_dropout=0.3).config.classifier_dropout == 0.3
    with pytest.raises(TypeError, match="needs a model"):
        CrossEncoder()


def test_max_length_set_after_loading_is_saved(tiny_model_dir, tmp_path):
    model = CrossEncoder(tiny_model_dir)
    assert model.max_seq_length == model.max_length == 128
    model.max_length = 32
    assert model.tokenize([("a " * 30, "b " * 30)])["input_ids"].shape[1] == 32
    model.save(tmp_path / "m")
    assert CrossEncoder(tmp_path / "m").max_length == 32
    model.max_seq_length = 24  # sentence-transformers 6's name
    assert model.max_length == 24
    with pytest.raises(ValueError, match="128 positions"):
        model.max_length = 129
    with pytest.warns(DeprecationWarning, match="use activation_fn"):
        assert model.default_activation_function is model.activation_fn


def test_model_kwargs_precision_is_kept(tiny_model_dir):
    model = CrossEncoder(tiny_model_dir, model_kwargs={"torch_dtype": torch.bfloat16})
    assert model.dtype == next(model.model.parameters()).dtype == torch.bfloat16
    assert model.predict(PAIRS).dtype == np.float32
    assert CrossEncoder(tiny_model_dir, model_kwargs={"torch_dtype": "auto"}).dtype == torch.float32


def test_to_moves_the_torch_backend_and_returns_the_model(tiny_model_dir, tmp_path, monkeypatch):
    model = CrossEncoder(tiny_model_dir, device="cpu")
    expected = model.predict(PAIRS)
    assert model.to("cpu") is model and model.device == torch.device("cpu")
    np.testing.assert_allclose(model.predict(PAIRS), expected, atol=1e-6)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        model.to("cuda")
    assert model.device == torch.device("cpu")  # a refused move changes nothing
    shutil.copytree(tiny_model_dir, tmp_path / "model")  # the export is written beside the model: not the shared one
    onnx = CrossEncoder(tmp_path / "model", backend="onnx", device="cpu")
    with pytest.raises(ValueError, match="to\\(\\) moves the torch backend"):
        onnx.to("cpu")


def test_unavailable_gpu_is_named_plainly(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available.*device='cpu'"):
        CrossEncoder(tiny_model_dir, device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="'cuda:3' does not exist: 1 CUDA device"):
        CrossEncoder(tiny_model_dir, device="cuda:3")


def test_max_length_override(tiny_model_dir):
    model = CrossEncoder(tiny_model_dir, max_length=16)
    assert model.tokenize([("a " * 30, "b " * 30)])["input_ids"].shape[1] == 16
    # More than the position embeddings would fail deep in the model on the first long pair.
    with pytest.raises(ValueError, match="max_length=512 is more than the model's 128 positions"):
        CrossEncoder(tiny_model_dir, max_length=512)


def test_zero_token_budget_is_refused_not_read_as_the_default(tiny_model_dir):
    with pytest.raises(ValueError, match="max_batch_tokens"):
        CrossEncoder(tiny_model_dir, max_batch_tokens=0)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        CrossEncoder(tiny_model_dir).predict(PAIRS, max_batch_tokens=0)


def test_collections_sentence_transformers_accepts_are_accepted(model):
    expected = model.predict(PAIRS)
    np.testing.assert_allclose(model.predict(np.array(PAIRS)), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict(p for p in PAIRS), expected, atol=1e-6)
    assert model.predict(np.array(PAIRS[0])) == pytest.approx(expected[0], abs=1e-6)  # one pair as a 1-D array
    docs = [doc for _, doc in PAIRS]
    ranked = model.rank(PAIRS[0][0], docs)
    for collection in (np.array(docs), (d for d in docs), tuple(docs)):
        assert model.rank(PAIRS[0][0], collection) == ranked
    with pytest.raises(TypeError, match="documents must be a list of str, got dict"):
        model.rank("q", {"a": 1})


def test_sentence_transformers_call_argument_names(model):
    expected = model.predict(PAIRS)
    np.testing.assert_allclose(model.predict(inputs=PAIRS), expected, atol=1e-6)
    np.testing.assert_allclose(model.predict(sentences=PAIRS), expected, atol=1e-6)
    logits = model.predict(PAIRS, activation_fn=torch.nn.Identity())
    with pytest.warns(DeprecationWarning, match="activation_fct"):
        np.testing.assert_allclose(model.predict(PAIRS, activation_fct=torch.nn.Identity()), logits, atol=1e-6)
    with pytest.warns(DeprecationWarning, match="num_workers"):
        model.predict(PAIRS, num_workers=2)
    docs = [doc for _, doc in PAIRS]
    with pytest.warns(DeprecationWarning):
        raw = model.rank("q", docs, activation_fct=torch.nn.Identity())
    assert raw == model.rank("q", docs, activation_fn=torch.nn.Identity())
    assert model.rank("q", docs, convert_to_tensor=True) == model.rank("q", docs)
    with pytest.raises(TypeError, match="pairs twice"):
        model.predict(PAIRS, inputs=PAIRS)
    with pytest.raises(TypeError, match="unexpected keyword argument.*prompt_typo"):
        model.predict(PAIRS, prompt_typo=1)


def test_oom_splits_batch_and_retries(model, monkeypatch):
    calls = []
    original = model.backend.forward

    def flaky(features):
        calls.append(features["input_ids"].shape[0])
        if features["input_ids"].shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return original(features)

    monkeypatch.setattr(model.backend, "forward", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    scores = model.predict(PAIRS[:3], batch_size=32)
    monkeypatch.undo()
    np.testing.assert_allclose(scores, model.predict(PAIRS[:3]), atol=1e-5)
    assert calls[0] == 3 and calls.count(1) == 3


def test_predict_from_several_threads_gives_each_thread_its_own_results(tiny_model_dir, monkeypatch):
    # A fast tokenizer keeps its truncation settings as state: a thread that set "truncate to max_length" could
    # have its call run with another thread's "no truncation" (or fail inside the tokenizer).
    import threading
    import time

    model = CrossEncoder(tiny_model_dir)
    long_pairs = [("where is the museum island", "berlin " * 300)] * 3
    short_pairs = PAIRS * 3
    expected = {id(long_pairs): model.predict(long_pairs), id(short_pairs): model.predict(short_pairs)}
    set_state = model.tokenizer.set_truncation_and_padding

    def slow_set_state(*args, **kwargs):
        set_state(*args, **kwargs)
        time.sleep(0.02)  # widen the gap between setting the state and encoding with it

    monkeypatch.setattr(model.tokenizer, "set_truncation_and_padding", slow_set_state)
    failures: list[str] = []

    def work(pairs):
        try:
            for _ in range(3):
                np.testing.assert_allclose(model.predict(pairs), expected[id(pairs)], atol=1e-5)
        except Exception as exc:  # noqa: BLE001 - collected and reported by the main thread
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(p,)) for p in (long_pairs, short_pairs) * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]


def test_model_can_be_copied_and_pickled(model):
    import copy
    import pickle

    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_allclose(clone.predict(PAIRS), model.predict(PAIRS), atol=1e-6)
