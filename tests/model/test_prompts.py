"""Prompts (sentence-transformers >= 6): parity with its CrossEncoder, errors, saving, long documents, onnx."""

from __future__ import annotations

import json
import logging
import shutil

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
    "The urban area of Berlin comprised about 4.1 million people in 2014.",
    "",
    "Berlin " * 300,  # truncated: the prompt must not push the query out
]
PAIRS = [(QUERY, p) for p in PASSAGES] + [("A man is eating food.", "A man is eating a piece of bread.")]
PROMPTS = {"query": "Given a web search query, judge the passage: ", "short": "q: ", "none": ""}
LONG_DOC = " ".join(f"Sentence {i} is about the city of Berlin and its {i * 7} museums." for i in range(60))
ATOL = 1e-5


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


@pytest.fixture(scope="module")
def st_folder(tiny_model_dir, tmp_path_factory):
    """A sentence-transformers 6 folder with prompts and default_prompt_name="query"."""
    path = tmp_path_factory.mktemp("prompted") / "st"
    STCrossEncoder(str(tiny_model_dir), prompts=PROMPTS, default_prompt_name="query").save(str(path))
    return path


@pytest.fixture(scope="module")
def pair(st_folder):
    return CrossEncoder(st_folder), STCrossEncoder(str(st_folder))


@pytest.mark.parametrize("call", [{}, {"prompt_name": "short"}, {"prompt_name": "none"}, {"prompt": "custom: "},
                                  {"prompt": ""}, {"prompt": "custom: ", "prompt_name": "short"}])
def test_predict_and_rank_match_sentence_transformers(pair, call):
    ours, theirs = pair
    assert ours.prompts == theirs.prompts == PROMPTS and ours.default_prompt_name == "query"
    assert _max_diff(ours.predict(PAIRS, **call), theirs.predict(PAIRS, **call)) < ATOL
    a, b = ours.rank(QUERY, PASSAGES, **call), theirs.rank(QUERY, PASSAGES, **call)
    assert [h["corpus_id"] for h in a] == [h["corpus_id"] for h in b]
    assert _max_diff([h["score"] for h in a], [h["score"] for h in b]) < ATOL


def test_the_prompt_goes_before_the_first_text(pair, tiny_model_dir):
    ours, _ = pair
    plain = CrossEncoder(tiny_model_dir)
    expected = plain.predict([(PROMPTS["query"] + a, b) for a, b in PAIRS])
    assert _max_diff(ours.predict(PAIRS), expected) < ATOL
    assert _max_diff(ours.predict(PAIRS, prompt=""), plain.predict(PAIRS)) < ATOL
    assert _max_diff(ours.predict(PAIRS), plain.predict(PAIRS)) > 1e-4  # the prompt changes the scores


def test_constructor_arguments_override_the_folder_as_in_sentence_transformers(st_folder):
    kwargs = {"prompts": {"query": "Q: ", "extra": "E: "}, "default_prompt_name": "extra"}
    ours, theirs = CrossEncoder(st_folder, **kwargs), STCrossEncoder(str(st_folder), **kwargs)
    assert ours.prompts == theirs.prompts == {**PROMPTS, "query": "Q: ", "extra": "E: "}
    assert ours.default_prompt_name == theirs.default_prompt_name == "extra"
    for call in ({}, {"prompt_name": "query"}):
        assert _max_diff(ours.predict(PAIRS, **call), theirs.predict(PAIRS, **call)) < ATOL


def test_prompts_of_a_folder_without_modules_json_are_ignored_as_in_sentence_transformers(st_folder, tmp_path):
    folder = shutil.copytree(st_folder, tmp_path / "plain")
    (folder / "modules.json").unlink()
    ours, theirs = CrossEncoder(folder), STCrossEncoder(str(folder))
    assert ours.prompts == theirs.prompts == {} and ours.default_prompt_name is theirs.default_prompt_name is None
    assert _max_diff(ours.predict(PAIRS), theirs.predict(PAIRS)) < ATOL


def _bi_encoder_folder(tiny_model_dir, folder, model_type):
    """A sentence-transformers bi-encoder save (all-MiniLM-L6-v2 style: Transformer + Pooling) with a query prompt."""
    shutil.copytree(tiny_model_dir, folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    config = {"prompts": {"query": "query: "}, "default_prompt_name": "query", "similarity_fn_name": "cosine"}
    if model_type is not None:
        config["model_type"] = model_type
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("model_type", [None, "SentenceTransformer"])
def test_prompts_of_a_bi_encoder_base_are_ignored_as_in_sentence_transformers(tiny_model_dir, tmp_path, model_type):
    """sentence-transformers converts a save of another model type and reads its prompts only from CrossEncoder
    saves (a config without model_type is a SentenceTransformer's): neither applied nor saved into the new model."""
    folder = _bi_encoder_folder(tiny_model_dir, tmp_path / "bi", model_type)
    ours, theirs = CrossEncoder(folder), STCrossEncoder(str(folder))
    assert ours.prompts == theirs.prompts == {} and ours.default_prompt_name is theirs.default_prompt_name is None
    assert _max_diff(ours.predict(PAIRS), theirs.predict(PAIRS)) < ATOL
    ours.save(tmp_path / "ce")
    saved = json.loads((tmp_path / "ce" / "config_sentence_transformers.json").read_text())
    assert saved["prompts"] == {} and saved["default_prompt_name"] is None
    assert STCrossEncoder(str(tmp_path / "ce")).prompts == {}


def test_unknown_prompt_name_is_refused_naming_the_known_ones(pair, tiny_model_dir):
    ours, _ = pair
    calls = (lambda: ours.predict(PAIRS, prompt_name="qeury"), lambda: ours.rank(QUERY, PASSAGES, prompt_name="qeury"),
             lambda: ours.logits_with_token_counts(PAIRS, prompt_name="qeury"))
    for call in calls:
        with pytest.raises(ValueError, match=r"prompt_name='qeury' is not one of this model's prompts") as error:
            call()
        assert all(repr(name) in str(error.value) for name in PROMPTS)
    with pytest.raises(ValueError, match="this model has no prompts"):
        CrossEncoder(tiny_model_dir).predict(PAIRS, prompt_name="query")
    with pytest.raises(ValueError, match=r"default_prompt_name='doc' \(from CrossEncoder\(default_prompt_name=...\)\)"
                                         r" is not one of the prompts: the known names are 'query'"):
        CrossEncoder(tiny_model_dir, prompts={"query": "q: "}, default_prompt_name="doc")


def test_bad_prompt_types_are_refused(tiny_model_dir):
    with pytest.raises(TypeError, match="prompts must be a dict"):
        CrossEncoder(tiny_model_dir, prompts="query: ")
    with pytest.raises(TypeError, match=r"prompts\['query'\] must be a str"):
        CrossEncoder(tiny_model_dir, prompts={"query": 1})
    with pytest.raises(TypeError, match="prompt must be a str"):
        CrossEncoder(tiny_model_dir).predict(PAIRS, prompt=1)


def test_prompt_wins_over_prompt_name_with_a_warning(pair, caplog):
    ours, _ = pair
    with caplog.at_level(logging.WARNING):
        both = ours.predict(PAIRS, prompt="custom: ", prompt_name="short")
    assert "ignoring prompt_name='short'" in caplog.text
    assert _max_diff(both, ours.predict(PAIRS, prompt="custom: ")) == 0


def test_save_round_trip_in_both_libraries(tiny_model_dir, tmp_path):
    ours = CrossEncoder(tiny_model_dir, prompts={"query": "query: ", "doc": "doc: "}, default_prompt_name="query")
    ours.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config_sentence_transformers.json").read_text())
    assert saved["prompts"] == {"query": "query: ", "doc": "doc: "} and saved["default_prompt_name"] == "query"
    reloaded, theirs = CrossEncoder(tmp_path / "m"), STCrossEncoder(str(tmp_path / "m"))
    assert reloaded.prompts == theirs.prompts == ours.prompts
    assert reloaded.default_prompt_name == theirs.default_prompt_name == "query"
    for call in ({}, {"prompt_name": "doc"}):
        expected = ours.predict(PAIRS, **call)
        assert _max_diff(reloaded.predict(PAIRS, **call), expected) < ATOL
        assert _max_diff(theirs.predict(PAIRS, **call), expected) < ATOL


def test_default_prompt_set_after_loading_is_saved(tiny_model_dir, tmp_path):
    ours = CrossEncoder(tiny_model_dir)
    ours.prompts["query"] = "query: "
    ours.default_prompt_name = "query"
    ours.save_pretrained(tmp_path / "m")
    assert STCrossEncoder(str(tmp_path / "m")).default_prompt_name == "query"


def test_symmetric_puts_the_prompt_before_the_first_text_of_both_orders(pair, tiny_model_dir):
    ours, _ = pair
    logits = CrossEncoder(tiny_model_dir).predict(
        [(PROMPTS["short"] + a, b) for a, b in PAIRS] + [(PROMPTS["short"] + b, a) for a, b in PAIRS],
        activation_fn=torch.nn.Identity())
    expected = torch.sigmoid(torch.tensor((logits[:len(PAIRS)] + logits[len(PAIRS):]) / 2)).numpy()
    assert _max_diff(ours.predict(PAIRS, prompt_name="short", symmetric=True), expected) < ATOL


def test_token_counts_include_the_default_prompt(pair, tiny_model_dir):
    ours, _ = pair
    short = PAIRS[:2]
    prompt_tokens = len(ours.tokenizer(PROMPTS["query"], add_special_tokens=False)["input_ids"])
    logits, tokens = ours.logits_with_token_counts(short)
    plain_logits, plain_tokens = CrossEncoder(tiny_model_dir).logits_with_token_counts(short)
    assert tokens == [n + prompt_tokens for n in plain_tokens]
    assert _max_diff(logits[:, 0], ours.predict(short, activation_fn=torch.nn.Identity())) < ATOL
    assert _max_diff(ours.logits_with_token_counts(short, prompt="")[0], plain_logits) < ATOL


@pytest.mark.parametrize("how", ["max", "first"])
def test_long_document_windows_carry_the_prompt_and_make_room_for_it(pair, how):
    ours, _ = pair
    ours.max_length = 64
    try:
        plain = ours.rank(QUERY, [LONG_DOC], long_documents=how, prompt="")[0]
        hit = ours.rank(QUERY, [LONG_DOC], long_documents=how)[0]
        start, end = hit["window_span"]
        # The prompt's tokens take room from the passage: shorter windows, and each scores as its prompted pair.
        assert end - start < plain["window_span"][1] - plain["window_span"][0]
        assert hit["score"] == pytest.approx(float(ours.predict((QUERY, LONG_DOC[start:end]))), abs=ATOL)
        assert len(ours.tokenize([(PROMPTS["query"] + QUERY, LONG_DOC[start:end])])["input_ids"][0]) <= 64
        with pytest.raises(ValueError, match="query with its prompt is .* shorten the query or the prompt"):
            ours.rank(QUERY, [LONG_DOC], long_documents=how, prompt="instruction " * 60)
    finally:
        ours.max_length = None


def test_onnx_backend_applies_the_prompt(st_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    folder = shutil.copytree(st_folder, tmp_path / "m")  # the export is written beside the model
    onnx = CrossEncoder(folder, backend="onnx", backend_kwargs={"num_threads": 1})
    theirs = STCrossEncoder(str(st_folder))
    for call in ({}, {"prompt_name": "short"}):
        assert _max_diff(onnx.predict(PAIRS, **call), theirs.predict(PAIRS, **call)) < 1e-4


def _fake_hub(repo_id, weights_dir, st_files_dir, tmp_path, monkeypatch):
    """A Hub cache holding only what transformers downloads for ``repo_id`` (``weights_dir``'s files), and a stand-in
    Hub download that serves the sentence-transformers files from ``st_files_dir``; returns the list of
    ``(repo_id, filename, revision)`` it was asked for."""
    import huggingface_hub

    snapshot = tmp_path / "cache" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / ("a" * 40)
    shutil.copytree(weights_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    real = huggingface_hub.hf_hub_download
    fetched = []

    def download(repo_id, filename, **kwargs):
        if filename in ("config_sentence_transformers.json", "modules.json"):
            fetched.append((repo_id, filename, kwargs.get("revision")))
            return str(st_files_dir / filename)
        return real(repo_id, filename, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return fetched


def test_hub_model_fetches_its_sentence_transformers_files(st_folder, tiny_model_dir, tmp_path, monkeypatch):
    """The cache holds only what transformers downloads; the prompts (and activation) files are fetched too."""
    fetched = _fake_hub("acme/prompted", tiny_model_dir, st_folder, tmp_path, monkeypatch)
    model = CrossEncoder("acme/prompted", cache_folder=str(tmp_path / "cache"), revision="main")
    assert sorted(fetched) == [("acme/prompted", "config_sentence_transformers.json", "main"),
                               ("acme/prompted", "modules.json", "main")]
    assert model.prompts == PROMPTS and model.default_prompt_name == "query"
    assert _max_diff(model.predict(PAIRS), STCrossEncoder(str(st_folder)).predict(PAIRS)) < ATOL


def test_hub_bi_encoder_base_does_not_fetch_modules_json(tiny_model_dir, tmp_path, monkeypatch):
    """modules.json matters only for a CrossEncoder config: for a bi-encoder's, it is not asked for."""
    folder = _bi_encoder_folder(tiny_model_dir, tmp_path / "bi", None)
    fetched = _fake_hub("acme/bi", tiny_model_dir, folder, tmp_path, monkeypatch)
    model = CrossEncoder("acme/bi", cache_folder=str(tmp_path / "cache"))
    assert [filename for _, filename, _ in fetched] == ["config_sentence_transformers.json"]
    assert model.prompts == {} and model.default_prompt_name is None


def test_hub_model_without_those_files_offline_has_no_prompts(tiny_model_dir, tmp_path):
    snapshot = tmp_path / "cache" / "models--acme--plain" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    model = CrossEncoder("acme/plain", cache_folder=str(tmp_path / "cache"))
    assert model.prompts == {} and model.default_prompt_name is None
