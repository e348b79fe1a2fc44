"""Tiny corpora and indexes for the retrieval tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from retrieval_helpers import DOCS, write_jsonl

from crossencoder.retrieval import BiEncoder, build_index


@pytest.fixture(scope="session")
def corpus_path(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", DOCS)


@pytest.fixture(scope="session")
def minilm_bi_encoder() -> BiEncoder:
    """The real all-MiniLM-L6-v2 bi-encoder (small enough for a 6-document corpus)."""
    return BiEncoder()


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, corpus_path, minilm_bi_encoder) -> Path:
    out = tmp_path_factory.mktemp("indexes") / "idx"
    build_index(corpus_path, out, bi_encoder=minilm_bi_encoder, show_progress_bar=False)
    return out
