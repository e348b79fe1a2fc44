"""Unexpected errors logged once, no trailing-slash redirect, and what the request-duration metric measures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from server_helpers import live_server

from crossencoder.server.middleware import UnexpectedErrorMiddleware

QUERY = "How many people live in Berlin?"
DOCS = ["Berlin has 3.5 million inhabitants.", "Paris is in France."]
ORIGIN = "http://app.example"


class BrokenActivationModel:
    """A CrossEncoder whose activation fails: an unexpected error inside an endpoint, after the model call."""

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    @property
    def activation_fn(self):
        raise RuntimeError("activation exploded")


@contextmanager
def error_records(caplog) -> Iterator[list[logging.LogRecord]]:
    """ERROR records of the app and of uvicorn, collected while in the block (enter it once the server runs:
    uvicorn's logging setup replaces the handlers of its loggers, which do not propagate to caplog's root one)."""
    records: list[logging.LogRecord] = []
    server_logger = logging.getLogger("uvicorn.error")
    server_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR):
            yield records
    finally:
        server_logger.removeHandler(caplog.handler)
        records.extend(r for r in caplog.records if r.levelno >= logging.ERROR)


def test_unexpected_error_is_one_log_entry_and_a_json_500_with_cors(tiny_model, caplog):
    with live_server(BrokenActivationModel(tiny_model), cors_origins=(ORIGIN,)) as live:
        with error_records(caplog) as records:
            response = httpx.post(live.url + "/rerank", json={"query": QUERY, "texts": DOCS},
                                  headers={"Origin": ORIGIN}, timeout=30)
        metrics = httpx.get(live.url + "/metrics", timeout=30).text
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error", "error_type": "internal",
                               "detail": "internal server error"}
    # The browser that sent it can read the error (the answer passed through the CORS middleware).
    assert response.headers.get("access-control-allow-origin") == ORIGIN
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].getMessage() == "Unhandled error on POST /rerank"
    assert "activation exploded" in str(records[0].exc_info[1])
    assert 'crossencoder_request_errors_total{endpoint="/rerank",error_type="internal"} 1.0' in metrics


def test_the_server_logs_each_unexpected_error_once_and_keeps_answering(tiny_model, caplog):
    with live_server(BrokenActivationModel(tiny_model)) as live:
        with error_records(caplog) as records:
            statuses = [httpx.post(live.url + "/predict", json={"pairs": [["a", "b"]]}, timeout=30).status_code
                        for _ in range(2)]
        health = httpx.get(live.url + "/health", timeout=30)
    assert statuses == [500, 500] and health.status_code == 200
    assert [r.getMessage() for r in records] == ["Unhandled error on POST /predict"] * 2


@pytest.fixture(scope="module")
def plain_server(tiny_model):
    with live_server(tiny_model) as live:
        yield live


@pytest.mark.parametrize("path", ["/rerank/", "/v1/rerank/", "/v2/rerank/", "/predict/"])
def test_a_trailing_slash_is_404_like_tei_not_a_redirect(plain_server, path):
    response = httpx.post(plain_server.url + path, json={"query": QUERY, "texts": DOCS}, timeout=30)
    assert response.status_code == 404 and "location" not in response.headers
    assert response.json()["error_type"] == "not_found"
    assert f"did you mean {path.rstrip('/')} (without the trailing slash)?" in response.json()["error"]


def test_an_unknown_path_is_a_plain_404(plain_server):
    for path in ("/nowhere", "/nowhere/", "/"):
        response = httpx.post(plain_server.url + path, json={}, timeout=30)
        assert response.status_code == 404 and response.json()["error"] == "Not Found"


def test_request_duration_help_says_it_lasts_until_the_answer_is_sent(plain_server):
    text = httpx.get(plain_server.url + "/metrics", timeout=30).text
    help_line = next(line for line in text.splitlines()
                     if line.startswith("# HELP crossencoder_request_duration_seconds "))
    assert "response is complete" in help_line and "response start" not in help_line


def test_an_error_after_the_answer_started_is_left_to_the_server(caplog):
    # Nothing can be answered any more: the server must see the exception (to log it and drop the connection).
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-answer")

    sent = []

    async def send(message):
        sent.append(message)

    async def call():
        await UnexpectedErrorMiddleware(app)({"type": "http", "method": "GET", "path": "/x"}, None, send)

    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="mid-answer"):
        asyncio.run(call())
    assert [m["type"] for m in sent] == ["http.response.start"] and not caplog.records
