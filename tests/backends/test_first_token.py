"""First-token inference: the last layer computed for [CLS] only gives the full model's logits, and the export
uses it only where it is verified."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import onnx
import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from crossencoder import CrossEncoder
from crossencoder.backends.first_token import FirstTokenClassifier, supports_first_token

SMALL = {"vocab_size": 120, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
         "intermediate_size": 48, "max_position_embeddings": 64}
PAIRS = [("what is a cat", "a cat is a small domesticated carnivorous mammal with soft fur"),
         ("what is a cat", "the stock market fell sharply on monday"),
         ("capital of france", "paris is the capital and largest city of france and a centre of art")]
IDENTITY = torch.nn.Identity()


def padded_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (3, 20), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0  # padding must be masked out of the first token's attention
    mask[2, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("make", [
    lambda: BertForSequenceClassification(BertConfig(**SMALL, num_labels=1)),
    lambda: BertForSequenceClassification(BertConfig(**SMALL, num_labels=3)),
    lambda: RobertaForSequenceClassification(RobertaConfig(**SMALL, pad_token_id=1, num_labels=2)),
    lambda: ElectraForSequenceClassification(ElectraConfig(**SMALL, embedding_size=16, num_labels=1)),
], ids=["bert-1", "bert-3", "roberta", "electra"])
def test_first_token_logits_equal_the_full_model(make):
    torch.manual_seed(0)
    model = make().eval()
    assert supports_first_token(model)
    batch = padded_batch()
    with torch.no_grad():
        expected = model(**batch).logits
        got = FirstTokenClassifier(model)(**batch)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_unsupported_models_are_refused():
    relative = BertForSequenceClassification(BertConfig(**SMALL, position_embedding_type="relative_key"))
    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4,
                                                                  hidden_dim=48))
    assert not supports_first_token(relative)
    assert not supports_first_token(distil)
    with pytest.raises(ValueError, match="does not apply"):
        FirstTokenClassifier(distil)


@pytest.fixture()
def model_dir(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "tiny")


def attention_ops(path) -> int:
    return sum(node.op_type in {"Attention", "QAttention"} for node in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("quantize", [None, "int8"])
def test_export_skips_the_last_layers_other_tokens(model_dir, quantize):
    torch_model = CrossEncoder(model_dir)
    layers = torch_model.model.config.num_hidden_layers
    kwargs = {"quantize": quantize} if quantize else {}
    short = CrossEncoder(model_dir, backend="onnx", backend_kwargs=kwargs)
    full = CrossEncoder(model_dir, backend="onnx", backend_kwargs={**kwargs, "first_token": False})
    assert json.loads((short.backend.path.parent / "manifest.json").read_text()).get("first_token", True)
    # The fused attention op is gone from the last layer only.
    assert attention_ops(full.backend.path) == layers
    assert attention_ops(short.backend.path) == layers - 1
    tolerance = 1e-4 if quantize is None else 5e-2
    np.testing.assert_allclose(short.predict(PAIRS, activation_fn=IDENTITY),
                               torch_model.predict(PAIRS, activation_fn=IDENTITY), atol=tolerance, rtol=0)


def test_export_falls_back_to_the_full_graph_when_logits_differ(model_dir, monkeypatch, caplog):
    original = FirstTokenClassifier._head
    monkeypatch.setattr(FirstTokenClassifier, "_head", lambda self, first: original(self, first) + 1.0)
    with caplog.at_level(logging.WARNING):
        model = CrossEncoder(model_dir, backend="onnx")
    assert "first-token graph differs" in caplog.text
    assert json.loads((model.backend.path.parent / "manifest.json").read_text())["first_token"] is False
    assert attention_ops(model.backend.path) == model.model.config.num_hidden_layers
    expected = CrossEncoder(model_dir).predict(PAIRS, activation_fn=IDENTITY)
    np.testing.assert_allclose(model.predict(PAIRS, activation_fn=IDENTITY), expected, atol=1e-4, rtol=0)


def test_export_falls_back_when_the_first_token_export_raises(model_dir, monkeypatch, caplog):
    def broken(self, *args, **kwargs):
        raise RuntimeError("unsupported layer")

    monkeypatch.setattr(FirstTokenClassifier, "forward", broken)
    with caplog.at_level(logging.WARNING):
        model = CrossEncoder(model_dir, backend="onnx")
    assert "First-token export failed (RuntimeError: unsupported layer)" in caplog.text
    assert json.loads((model.backend.path.parent / "manifest.json").read_text())["first_token"] is False


def test_roberta_export_without_token_types_uses_first_token(tmp_path):
    from crossencoder.backends.onnx_export import ExportSettings, build_export, open_session

    torch.manual_seed(0)
    # A 120-token vocabulary: the export's own trace and check inputs must be valid ids of it.
    config = RobertaConfig(**SMALL, pad_token_id=1, num_labels=2)
    model = RobertaForSequenceClassification(config).eval()
    names = ["input_ids", "attention_mask"]
    path = build_export(model, names, ExportSettings(), None, "tiny-roberta", cache_dir=tmp_path)
    assert json.loads((path.parent / "manifest.json").read_text())["first_token"] is True
    assert attention_ops(path) == SMALL["num_hidden_layers"] - 1
    batch = padded_batch(seed=3)
    with torch.no_grad():
        expected = model(**batch).logits.numpy()
    got = open_session(path).run(["logits"], {k: v.numpy() for k, v in batch.items()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
