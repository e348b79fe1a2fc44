"""Model resolution: local folders, catalog names, the Hub cache (revision, offline) and readable failures."""

from __future__ import annotations

import logging
import shutil
import sys

import numpy as np
import pytest

from crossencoder import CATALOG, CrossEncoder, ModelNotFoundError
from crossencoder.model.loading import (
    is_sentence_transformers_cross_encoder,
    read_sentence_transformers_config,
    resolve_model,
)
from crossencoder.testing import make_tiny_cross_encoder


def _fake_hub_cache(cache, repo_id, snapshots: dict[str, object], refs: dict[str, str]):
    """Lay out folders exactly as huggingface_hub's cache does: models--org--name/{snapshots/<sha>,refs/<name>}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for sha, folder in snapshots.items():
        shutil.copytree(folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    for name, sha in refs.items():
        (repo / "refs" / name).write_text(sha)


def test_hub_id_loads_from_cache_offline_with_revision(tmp_path, tiny_model_dir):
    other = make_tiny_cross_encoder(tmp_path / "other", seed=1)
    main_sha, v1_sha = "a" * 40, "b" * 40
    _fake_hub_cache(tmp_path / "cache", "acme/tiny-reranker", {main_sha: tiny_model_dir, v1_sha: other},
                    {"main": main_sha, "v1": v1_sha})
    pairs = [("query", "a passage"), ("query", "another passage")]
    from_cache = CrossEncoder("acme/tiny-reranker", cache_folder=str(tmp_path / "cache"))
    np.testing.assert_allclose(from_cache.predict(pairs), CrossEncoder(tiny_model_dir).predict(pairs), atol=1e-6)
    assert from_cache.model_path.name == main_sha
    tagged = CrossEncoder("acme/tiny-reranker", revision="v1", cache_folder=str(tmp_path / "cache"))
    np.testing.assert_allclose(tagged.predict(pairs), CrossEncoder(other).predict(pairs), atol=1e-6)


def test_optional_hub_files_work_without_huggingface_hub_errors_module(monkeypatch, caplog):
    """huggingface_hub before 0.25 (the floor is 0.23) has no ``huggingface_hub.errors``; its ``utils`` has the
    error classes. A missing optional file reads as absent, a failed request as absent with a warning."""
    import huggingface_hub
    import huggingface_hub.utils
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    for name, cls in (("EntryNotFoundError", EntryNotFoundError), ("HfHubHTTPError", HfHubHTTPError)):
        monkeypatch.setattr(huggingface_hub.utils, name, cls)
    monkeypatch.setitem(sys.modules, "huggingface_hub.errors", None)  # "import huggingface_hub.errors" now fails
    unreachable = HfHubHTTPError.__new__(HfHubHTTPError)
    Exception.__init__(unreachable, "503 Server Error: Service Unavailable")

    def download(repo_id, filename, **kwargs):
        raise EntryNotFoundError(f"{filename} not found") if filename != "modules.json" else unreachable

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    hub_kwargs = {"revision": None, "cache_dir": None, "local_files_only": False, "token": None}
    assert read_sentence_transformers_config("acme/tiny-reranker", hub_kwargs) == {}
    with caplog.at_level(logging.WARNING, logger="crossencoder.model.loading"):
        assert not is_sentence_transformers_cross_encoder("acme/tiny-reranker", hub_kwargs,
                                                          {"model_type": "CrossEncoder"})
    assert "Could not read modules.json of 'acme/tiny-reranker' (HfHubHTTPError: 503 Server Error" in caplog.text


def test_unreachable_hub_gives_one_readable_error(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2", cache_folder=str(tmp_path))
    message = str(info.value)
    assert "cross-encoder/ms-marco-MiniLM-L6-v2" in message
    assert "cache" in message and "offline" in message
    assert "local model folder" in message


def test_catalog_short_name_resolves_to_hub_id():
    assert resolve_model("ms-marco-MiniLM-L6-v2") == "cross-encoder/ms-marco-MiniLM-L6-v2"
    assert {"rerank", "similarity", "nli", "duplicate"} <= {e.task for e in CATALOG.values()}
    assert any("multilingual" in e.languages for e in CATALOG.values())


def test_missing_local_folder_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        CrossEncoder(str(tmp_path / "missing" / "model"))


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a transformers model folder"):
        CrossEncoder(tmp_path / "empty")


def test_empty_name():
    with pytest.raises(ModelNotFoundError, match="empty"):
        CrossEncoder("")


def test_folder_without_tokenizer_files_is_refused(tmp_path, tiny_model_dir):
    # transformers would build a tokenizer of special tokens only and every word would score as [UNK].
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, folder / name)
    with pytest.raises(ModelNotFoundError, match="no tokenizer files"):
        CrossEncoder(folder)


def test_architecture_without_sdpa_with_padding_offset_positions_loads_and_scores_long_pairs(tmp_path):
    # MPNet has no SDPA attention, and like RoBERTa numbers positions from padding_idx + 1: with a tokenizer that
    # sets no model_max_length, the window must stop 2 short of max_position_embeddings.
    import torch
    from transformers import BertTokenizerFast, MPNetConfig, MPNetForSequenceClassification

    from crossencoder.testing import minilm_dir

    tokenizer = BertTokenizerFast.from_pretrained(minilm_dir())
    tokenizer.model_max_length = int(1e30)
    config = MPNetConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=66, num_labels=1)
    torch.manual_seed(0)
    MPNetForSequenceClassification(config).save_pretrained(tmp_path / "mpnet")
    tokenizer.save_pretrained(tmp_path / "mpnet")
    model = CrossEncoder(tmp_path / "mpnet")
    assert model.max_length == 64
    assert np.isfinite(model.predict([("query", "berlin " * 100), ("query", "short")])).all()
