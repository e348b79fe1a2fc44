"""BiEncoder: same vectors as sentence-transformers on the same folders."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer, models

from crossencoder.errors import CrossEncoderError, ModelNotFoundError
from crossencoder.retrieval import BiEncoder
from crossencoder.testing import minilm_dir

TEXTS = [
    "How many people live in Berlin?",
    "Berlin has a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers.",
    "x",
    "word " * 400,  # longer than max_seq_length: truncated the same way
]


def test_default_model_matches_sentence_transformers():
    ours = BiEncoder().encode(TEXTS)
    theirs = SentenceTransformer(str(minilm_dir()), device="cpu").encode(TEXTS)
    assert ours.dtype == np.float32 and ours.shape == (4, 384)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_plain_encoder_folder_uses_mean_pooling(tiny_model_dir):
    ours = BiEncoder(tiny_model_dir).encode(TEXTS[:3], normalize=False)
    theirs = SentenceTransformer(str(tiny_model_dir), device="cpu").encode(TEXTS[:3])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # Not normalised unless asked: a plain folder has no Normalize module.
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0)


def test_cls_pooling_folder(tiny_model_dir, tmp_path):
    transformer = models.Transformer(str(tiny_model_dir), max_seq_length=16)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="cls")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(tmp_path / "st"))
    ours = BiEncoder(tmp_path / "st")
    assert ours.pooling == "cls" and ours.max_length == 16
    theirs = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(ours.encode(TEXTS, normalize=False), theirs, atol=1e-5)


def test_unsupported_module_is_a_clear_error(tiny_model_dir, tmp_path):
    transformer = models.Transformer(str(tiny_model_dir))
    dim = transformer.get_embedding_dimension()
    dense = models.Dense(dim, 8)
    SentenceTransformer(modules=[transformer, models.Pooling(dim), dense], device="cpu").save(str(tmp_path / "st"))
    with pytest.raises(CrossEncoderError, match="Dense"):
        BiEncoder(tmp_path / "st")


def test_bad_inputs(tiny_model_dir):
    encoder = BiEncoder(tiny_model_dir)
    assert encoder.encode([]).shape == (0, encoder.dimension)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encoder.encode(["ok", 3])
    with pytest.raises(TypeError, match="single string"):
        encoder.encode("one text")


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        BiEncoder(tmp_path / "missing")
    with pytest.raises(ModelNotFoundError, match="nobody/no-such-bi-encoder"):
        BiEncoder("nobody/no-such-bi-encoder")  # offline in tests: the cache has no such model


def test_pooling_mode_written_as_a_list(tiny_model_dir, tmp_path):
    # sentence-transformers saves several pooling modes as a JSON list (vectors concatenated): refused by name,
    # while a one-item list is that mode.
    transformer = models.Transformer(str(tiny_model_dir))
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode=("mean", "max"))
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(tmp_path / "st"))
    config = tmp_path / "st" / "1_Pooling" / "config.json"
    with pytest.raises(CrossEncoderError, match=f"{config}: exactly one of mean, cls or max pooling"):
        BiEncoder(tmp_path / "st")
    config.write_text(config.read_text().replace('"max"', '"cls"').replace('"mean",', ""))
    assert BiEncoder(tmp_path / "st").pooling == "cls"
