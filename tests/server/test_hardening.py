"""Production hardening: non-finite model output, the OpenAPI auth scheme, stalled uploads, probes."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest

from crossencoder.server import ServerSettings, create_app
from server_helpers import API_KEY, live_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUERY = "How many people live in Berlin?"
DOCS = ["Berlin has 3.5 million inhabitants.", "Paris is in France.", "Berlin is known for its museums."]


class OverflowingModel:
    """A CrossEncoder whose logit is NaN for passages containing "nan" and +inf for those containing "inf": what
    a float16 overflow looks like."""

    def __init__(self, model) -> None:
        self._model = model

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def logits_with_token_counts(self, pairs, **kwargs):
        logits, tokens = self._model.logits_with_token_counts(pairs, **kwargs)
        for i, (_, passage) in enumerate(pairs):
            if "nan" in passage.split():
                logits[i] = float("nan")
            elif "inf" in passage.split():
                logits[i] = float("inf")
        return logits, tokens


@pytest.fixture(scope="module")
def overflowing(tiny_model):
    with live_server(OverflowingModel(tiny_model)) as live:
        yield live


@pytest.mark.parametrize(("path", "body", "fragment"), [
    ("/rerank", {"query": QUERY, "texts": [DOCS[0], "a nan b"]}, "1 of 2 texts, first texts[1]"),
    # +inf is 1.0 after the sigmoid, but the raw score cannot be sent, and the model overflowed either way.
    ("/rerank", {"query": QUERY, "texts": ["inf", DOCS[0], "nan"], "raw_scores": True}, "2 of 3 texts, first texts[0]"),
    ("/rerank", {"query": QUERY, "documents": ["x", "inf"]}, "1 of 2 documents, first documents[1]"),
    ("/v1/rerank", {"query": QUERY, "documents": [DOCS[0], "nan"]}, "documents[1]"),
    ("/v2/rerank", {"query": QUERY, "documents": ["nan"]}, "documents[0]"),
    ("/predict", {"pairs": [["a", "b"], ["a", "nan"]]}, "pairs[1]"),
    ("/predict", {"inputs": [["a", "b"], ["a", "nan"]]}, "1 of 2 pairs, first inputs[1]"),
    ("/predict", {"inputs": ["a", "nan"]}, "1 of 1 pairs, first inputs;"),
])
def test_non_finite_scores_are_a_clear_500_not_null(overflowing, caplog, path, body, fragment):
    with caplog.at_level(logging.ERROR, logger="crossencoder.server.app"):
        response = httpx.post(overflowing.url + path, json=body, timeout=30)
    assert response.status_code == 500
    data = response.json()
    assert data["error_type"] == "non_finite_scores" and data["detail"] == data["error"]
    assert "not finite numbers" in data["error"] and fragment in data["error"]
    assert any("non-finite scores" in r.getMessage() and "--dtype float32" in r.getMessage() for r in caplog.records)
    metrics = httpx.get(overflowing.url + "/metrics").text
    assert 'error_type="non_finite_scores"' in metrics


def test_finite_requests_merged_with_an_overflowing_one_still_succeed(tiny_model):
    async def both(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            return await asyncio.gather(http.post("/v2/rerank", json={"query": QUERY, "documents": DOCS}),
                                        http.post("/v2/rerank", json={"query": QUERY, "documents": ["nan"]}))

    # The worker waits for both requests: together they hold max_batch_pairs pairs.
    with live_server(OverflowingModel(tiny_model), max_wait_ms=5000, max_batch_pairs=len(DOCS) + 1) as live:
        good, bad = asyncio.run(both(live.url))
        metrics = httpx.get(live.url + "/metrics").text
    assert 'crossencoder_batch_requests_count 1.0' in metrics  # one model call held both requests
    assert bad.status_code == 500 and good.status_code == 200
    assert [r["index"] for r in good.json()["results"]] == [h["corpus_id"] for h in tiny_model.rank(QUERY, DOCS)]


def test_openapi_declares_the_bearer_scheme_on_protected_endpoints_only(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method in [("/rerank", "post"), ("/v1/rerank", "post"), ("/v2/rerank", "post"), ("/predict", "post"),
                         ("/info", "get"), ("/metrics", "get")]:
        assert schema["paths"][path][method]["security"] == [{"ApiKey": []}], path
    for path in ("/health", "/ready"):
        assert "security" not in schema["paths"][path]["get"], path
    # The scheme only documents; the middleware still checks the key (what /docs' "Authorize" sends).
    body = {"query": QUERY, "texts": DOCS}
    assert httpx.post(server.url + "/rerank", json=body).status_code == 401
    assert httpx.post(server.url + "/rerank", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert httpx.post(server.url + "/rerank", json=body, headers=AUTH).status_code == 200


def test_openapi_declares_no_scheme_without_a_key(tiny_model):
    schema = create_app(tiny_model, ServerSettings()).openapi()
    assert "securitySchemes" not in schema.get("components", {})
    assert "security" not in schema["paths"]["/rerank"]["post"]


def test_a_stalled_upload_is_answered_408_and_frees_its_slot(tiny_model):
    with live_server(tiny_model, request_timeout=2.0, max_connections=1) as live:
        port = int(live.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            # Declares 100 bytes, sends 10, then nothing: before the fix it held its slot (and the body read) forever.
            stalled.sendall(b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 100\r\n\r\n{\"query\": ")
            # The answer may come in several segments; the server then closes the connection (EOF).
            chunks = []
            while chunk := stalled.recv(4096):
                chunks.append(chunk)
        answer = b"".join(chunks).decode()
        assert answer.startswith("HTTP/1.1 408")
        assert '"error_type":"timeout"' in answer.replace(" ", "") and "connection: close" in answer.lower()
        ok = httpx.post(live.url + "/rerank", json={"query": QUERY, "texts": DOCS}, timeout=30)
        assert ok.status_code == 200


def test_ready_answers_head_like_health(server):
    # Load balancers that probe with HEAD would mark the server down for good on a 405.
    assert httpx.head(server.url + "/ready").status_code == 200


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
@pytest.mark.parametrize("literal", [b"NaN", b"-Infinity"])
def test_nan_or_infinity_literals_in_documents_are_refused_not_echoed_as_null(server, path, literal):
    # Python's JSON parser takes these non-JSON literals; echoed back they would silently become null.
    content = b'{"query": "q", "return_documents": true, "documents": ["a", {"text": "b", "x": ' + literal + b"}]}"
    response = httpx.post(server.url + path, content=content, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] == "documents[1] holds NaN or Infinity, which are not JSON numbers"
