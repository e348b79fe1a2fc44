"""Fixtures of the server tests: session-wide tiny models and a default live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import API_KEY, LiveServer, live_server

from crossencoder import CrossEncoder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir) -> CrossEncoder:
    return CrossEncoder(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_nli_model(tiny_nli_model_dir) -> CrossEncoder:
    return CrossEncoder(tiny_nli_model_dir)


@pytest.fixture(scope="module")
def server(tiny_model) -> Iterator[LiveServer]:
    """The default server of these tests: tiny reranker, API key, small limits."""
    with live_server(tiny_model, api_key=API_KEY, served_model_name="tiny", max_documents=100,
                     max_document_chars=2000, max_body_bytes=64 * 1024) as live:
        yield live
