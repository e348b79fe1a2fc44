"""Shared fixtures: small cross-encoder folders built on the fly, never downloaded."""

from __future__ import annotations

import os

# Tests must never reach a model hub: set before huggingface_hub is imported (it reads these once).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

from crossencoder.testing import make_minilm_cross_encoder, make_tiny_cross_encoder  # noqa: E402

NLI_LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer BERT re-ranker (1 label, window 128) with the real WordPiece tokenizer."""
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce"), num_labels=1)


@pytest.fixture(scope="session")
def tiny_nli_model_dir(tmp_path_factory):
    """A 2-layer BERT pair classifier with 3 NLI labels."""
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-nli"), num_labels=3, id2label=NLI_LABELS)


@pytest.fixture(scope="session")
def minilm_model_dir(tmp_path_factory):
    """all-MiniLM-L6-v2 weights with a seeded 1-label head (the ms-marco-MiniLM-L6-v2 architecture)."""
    return make_minilm_cross_encoder(tmp_path_factory.mktemp("minilm-ce"), num_labels=1)
