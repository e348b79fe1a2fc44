"""Endpoints over real HTTP: TEI and Cohere schemas (with the official SDK), predict, concurrency, auth, limits,
bad input and metrics."""

from __future__ import annotations

import asyncio
import json
import random

import cohere
import httpx
import numpy as np
import pytest

from server_helpers import API_KEY, live_server

AUTH = {"Authorization": f"Bearer {API_KEY}"}
QUERY = "How many people live in Berlin?"
DOCS = [
    "Berlin has a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers.",
    "Berlin is well known for its museums.",
    "Paris is the capital of France.",
    "New York City is famous for the Metropolitan Museum of Art.",
    "The city of Berlin is home to about 3.5 million people.",
]


def post(server, path: str, body, headers=AUTH, **kwargs) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=headers, timeout=30, **kwargs)


def assert_ranked_like(results, expected, index_key: str, score_key: str) -> None:
    """Same documents with the same scores, best first (merged batches pad differently: 1e-5 slack)."""
    assert len(results) == len(expected)
    got = {r[index_key]: r[score_key] for r in results}
    want = {h["corpus_id"]: h["score"] for h in expected}
    assert got.keys() == want.keys()
    for index, score in want.items():
        assert got[index] == pytest.approx(score, abs=1e-5)
    scores = [r[score_key] for r in results]
    assert scores == sorted(scores, reverse=True)


# ---------------------------------------------------------------------------------------------- TEI
def test_tei_rerank_matches_in_process_rank(server, tiny_model):
    response = post(server, "/rerank", {"query": QUERY, "texts": DOCS, "return_text": True})
    assert response.status_code == 200
    results = response.json()
    assert_ranked_like(results, tiny_model.rank(QUERY, DOCS), "index", "score")
    assert all(r["text"] == DOCS[r["index"]] for r in results)


def test_tei_raw_scores_are_logits_and_text_is_opt_in(server, tiny_model):
    import torch

    results = post(server, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    assert_ranked_like(results, tiny_model.rank(QUERY, DOCS, activation_fn=torch.nn.Identity()), "index", "score")
    assert all("text" not in r for r in results)


def test_tei_left_truncation_is_refused(server):
    response = post(server, "/rerank", {"query": QUERY, "texts": DOCS, "truncation_direction": "Left"})
    assert response.status_code == 422
    assert "truncation_direction" in response.json()["error"]


def test_score_activation_model_keeps_logits_sigmoid_maps_to_unit_interval(tiny_model_dir):
    import torch

    from crossencoder import CrossEncoder

    logit_model = CrossEncoder(tiny_model_dir, activation_fn=torch.nn.Identity())  # like ms-marco-MiniLM-L6-v2
    logits = logit_model.rank(QUERY, DOCS)
    body = {"query": QUERY, "documents": DOCS}
    with live_server(logit_model) as live:
        as_model = post(live, "/v2/rerank", body, headers={}).json()["results"]
    with live_server(logit_model, score_activation="sigmoid") as live:
        as_sigmoid = post(live, "/v2/rerank", body, headers={}).json()["results"]
        raw = post(live, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}, headers={}).json()
    assert_ranked_like(as_model, logits, "index", "relevance_score")
    probabilities = [{**h, "score": float(torch.sigmoid(torch.tensor(h["score"])))} for h in logits]
    assert_ranked_like(as_sigmoid, probabilities, "index", "relevance_score")
    assert_ranked_like(raw, logits, "index", "score")


# ---------------------------------------------------------------------------------------------- Cohere / Jina
def test_cohere_sdk_v2_rerank(server, tiny_model):
    client = cohere.ClientV2(api_key=API_KEY, base_url=server.url)
    response = client.rerank(model="tiny", query=QUERY, documents=DOCS, top_n=3)
    expected = tiny_model.rank(QUERY, DOCS, top_k=3)
    assert [r.index for r in response.results] == [h["corpus_id"] for h in expected]
    assert [r.relevance_score for r in response.results] == pytest.approx([h["score"] for h in expected], abs=1e-5)
    assert response.id and response.meta.api_version.version == "2"


def test_cohere_sdk_v1_rerank_returns_documents_as_sent(server, tiny_model):
    documents = [{"text": d, "source": f"doc-{i}"} for i, d in enumerate(DOCS[:3])] + DOCS[3:]
    client = cohere.Client(api_key=API_KEY, base_url=server.url)
    response = client.rerank(query=QUERY, documents=documents, return_documents=True)
    expected = tiny_model.rank(QUERY, DOCS)
    assert [r.index for r in response.results] == [h["corpus_id"] for h in expected]
    for result in response.results:
        assert result.document.text == DOCS[result.index]
        if result.index < 3:  # objects come back with their extra fields
            assert result.document.source == f"doc-{result.index}"


def test_cohere_sdk_sees_auth_failure(server):
    client = cohere.ClientV2(api_key="wrong", base_url=server.url)
    with pytest.raises(cohere.core.ApiError) as info:
        client.rerank(model="tiny", query=QUERY, documents=DOCS)
    assert info.value.status_code == 401


def tokens_of(model, query: str, texts: list[str]) -> int:
    return sum(model.logits_with_token_counts([(query, t) for t in texts])[1])


def test_jina_shape_and_rank_fields(server, tiny_model):
    body = {"model": "jina-reranker-v2", "query": QUERY, "documents": [{"text": d} for d in DOCS], "top_n": 2,
            "return_documents": True}
    data = post(server, "/v1/rerank", body).json()
    assert data["model"] == "tiny"
    # Jina's clients (Haystack's JinaRanker) read `usage`; every document is counted, not only the top_n.
    assert data["usage"] == {"prompt_tokens": tokens_of(tiny_model, QUERY, DOCS),
                             "total_tokens": tokens_of(tiny_model, QUERY, DOCS)}
    assert [r["document"]["text"] for r in data["results"]] == [h["text"] for h in
                                                                tiny_model.rank(QUERY, DOCS, 2, True)]
    docs = [{"title": f"T{i}", "body": d} for i, d in enumerate(DOCS)]
    data = post(server, "/v1/rerank", {"query": QUERY, "documents": docs, "rank_fields": ["title", "body"]}).json()
    joined = [f"title: T{i}\nbody: {d}" for i, d in enumerate(DOCS)]
    assert_ranked_like(data["results"], tiny_model.rank(QUERY, joined), "index", "relevance_score")
    assert all("document" not in r for r in data["results"])


def test_infinity_clients_post_documents_to_rerank(server, tiny_model):
    # LangChain's and litellm's infinity rerankers post `documents` to /rerank; infinity's client requires `usage`
    # and reads each document back as the string it sent.
    body = {"model": "mixedbread-ai/mxbai-rerank-xsmall-v1", "query": QUERY, "documents": DOCS, "top_n": 2,
            "return_documents": True}
    data = post(server, "/rerank", body).json()
    expected = tiny_model.rank(QUERY, DOCS, top_k=2, return_documents=True)
    assert_ranked_like(data["results"], expected, "index", "relevance_score")
    assert [r["document"] for r in data["results"]] == [h["text"] for h in expected]
    assert data["object"] == "rerank" and data["model"] == "tiny" and data["id"] and data["created"] > 0
    assert data["usage"]["total_tokens"] == tokens_of(tiny_model, QUERY, DOCS)
    raw = post(server, "/rerank", {"query": QUERY, "documents": DOCS, "raw_scores": True}).json()
    assert_ranked_like(raw["results"], tiny_model.rank(QUERY, DOCS, activation_fn=lambda x: x), "index",
                       "relevance_score")
    assert all("document" not in r for r in raw["results"])
    response = post(server, "/rerank", {"query": QUERY, "documents": []})
    assert response.status_code == 422 and response.json()["error"].startswith("documents:")


def test_rerank_on_a_classifier_is_a_clear_400(tiny_nli_model):
    with live_server(tiny_nli_model) as live:
        response = post(live, "/v2/rerank", {"query": QUERY, "documents": DOCS}, headers={})
    assert response.status_code == 400
    assert "/predict" in response.json()["error"]


# ---------------------------------------------------------------------------------------------- predict
def test_predict_scores_in_input_order(server, tiny_model):
    pairs = [[QUERY, d] for d in DOCS]
    data = post(server, "/predict", {"pairs": pairs}).json()
    assert [r["score"] for r in data["results"]] == pytest.approx(tiny_model.predict(pairs).tolist(), abs=1e-5)


def test_predict_speaks_tei_inputs_one_pair_or_a_batch(server, tiny_model, tiny_nli_model):
    pairs = [[QUERY, d] for d in DOCS]
    expected = tiny_model.predict(pairs).tolist()
    single = post(server, "/predict", {"inputs": pairs[0]}).json()
    assert single == [{"score": pytest.approx(expected[0], abs=1e-5), "label": "LABEL_0"}]
    batch = post(server, "/predict", {"inputs": pairs, "truncate": True}).json()
    assert [[p["score"] for p in row] for row in batch] == [[pytest.approx(e, abs=1e-5)] for e in expected]
    nli_pairs = [["A man is eating pizza", "A man eats something"], ["A dog runs", "A cat sleeps"]]
    probabilities = tiny_nli_model.predict(nli_pairs, apply_softmax=True)
    with live_server(tiny_nli_model) as live:
        rows = post(live, "/predict", {"inputs": nli_pairs}, headers={}).json()
    for row, p in zip(rows, probabilities):
        # Every label, best first, as TEI answers.
        assert [x["label"] for x in row] == [tiny_nli_model.id2label[i] for i in np.argsort(-p)]
        assert [x["score"] for x in row] == pytest.approx(sorted(p.tolist(), reverse=True), abs=1e-5)


def test_predict_symmetric_matches_the_library(server, tiny_model):
    pairs = [[QUERY, d] for d in DOCS]
    data = post(server, "/predict", {"pairs": pairs, "symmetric": True}).json()
    expected = tiny_model.predict(pairs, symmetric=True)
    assert not np.allclose(expected, tiny_model.predict(pairs), atol=1e-4)
    assert [r["score"] for r in data["results"]] == pytest.approx(expected.tolist(), abs=1e-5)


def test_predict_classifier_labels_and_probabilities(tiny_nli_model):
    pairs = [["A man is eating pizza", "A man eats something"], ["A dog runs", "A cat sleeps"]]
    expected_labels = tiny_nli_model.predict_labels(pairs)
    expected = tiny_nli_model.predict(pairs, apply_softmax=True)
    with live_server(tiny_nli_model) as live:
        data = post(live, "/predict", {"pairs": pairs}, headers={}).json()
        raw = post(live, "/predict", {"pairs": pairs, "raw_scores": True}, headers={}).json()
    assert [r["label"] for r in data["results"]] == expected_labels
    names = ["contradiction", "entailment", "neutral"]
    for row, result in zip(expected.tolist(), data["results"]):
        assert [result["scores"][n] for n in names] == pytest.approx(row, abs=1e-5)
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    logits = tiny_nli_model.predict(pairs, activation_fn=lambda x: x)
    for row, result in zip(logits.tolist(), raw["results"]):
        assert [result["scores"][n] for n in names] == pytest.approx(row, abs=1e-5)


# ---------------------------------------------------------------------------------------------- concurrency
def test_64_concurrent_clients_get_their_own_results(tiny_model):
    rng = random.Random(0)
    words = " ".join(DOCS).split()
    requests = []
    for client in range(64):
        for n in range(3):
            query = f"client {client} request {n}: " + " ".join(rng.choices(words, k=rng.randint(2, 8)))
            docs = [" ".join(rng.choices(words, k=rng.randint(3, 60))) for _ in range(rng.randint(1, 30))]
            requests.append((client, query, docs))
    expected = [tiny_model.rank(q, d) for _, q, d in requests]

    async def run_client(http: httpx.AsyncClient, client: int) -> list[tuple[int, list]]:
        out = []
        for i, (owner, query, docs) in enumerate(requests):
            if owner == client:
                response = await http.post("/rerank", json={"query": query, "texts": docs})
                assert response.status_code == 200, response.text
                out.append((i, response.json()))
        return out

    async def main() -> list[tuple[int, list]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=60) as http:
            chunks = await asyncio.gather(*(run_client(http, c) for c in range(64)))
        return [item for chunk in chunks for item in chunk]

    with live_server(tiny_model, max_wait_ms=5) as live:
        answers = asyncio.run(main())
        metrics = httpx.get(live.url + "/metrics").text
    assert len(answers) == len(requests)
    for i, results in answers:
        assert_ranked_like(results, expected[i], "index", "score")
    # Requests really were merged: fewer model calls than requests.
    calls = _metric(metrics, "crossencoder_batch_requests_count")
    assert calls < len(requests)
    assert _metric(metrics, "crossencoder_batch_requests_sum") == len(requests)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not found")


# ---------------------------------------------------------------------------------------------- auth
@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}, {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": f"Bearer {API_KEY}x"},
])
def test_auth_rejects_missing_or_wrong_keys(server, headers):
    response = post(server, "/rerank", {"query": QUERY, "texts": DOCS}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "missing or invalid API key", "error_type": "unauthorized",
                               "detail": "missing or invalid API key"}
    assert response.headers["www-authenticate"] == "Bearer"


def test_auth_accepts_lowercase_scheme_and_probes_are_open(server):
    assert post(server, "/rerank", {"query": QUERY, "texts": DOCS},
                headers={"Authorization": f"bearer {API_KEY}"}).status_code == 200
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert httpx.get(server.url + "/ready").status_code == 200
    assert httpx.get(server.url + "/metrics").status_code == 401
    assert httpx.get(server.url + "/metrics", headers=AUTH).status_code == 200


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("path", "content", "status", "error_type", "fragment"), [
    ("/rerank", b'{"query": "q", "texts": ["a"', 400, "malformed_json", "malformed JSON"),
    ("/rerank", b"", 422, "validation", "JSON object"),
    ("/rerank", b'["q", "a"]', 422, "validation", ""),
    ("/rerank", b'{"query": "", "texts": ["a"]}', 422, "validation", "query"),
    ("/rerank", b'{"query": "q", "texts": []}', 422, "validation", "texts"),
    ("/rerank", b'{"query": "q", "texts": ["a", 3]}', 422, "validation", "texts[1]"),
    ("/rerank", b'{"query": 5, "texts": ["a"]}', 422, "validation", "query"),
    ("/rerank", b'{"texts": ["a"]}', 422, "validation", "query: Field required"),
    ("/v2/rerank", b'{"query": "q", "documents": []}', 422, "validation", "documents"),
    ("/v2/rerank", b'{"query": "q", "documents": ["a", null]}', 422, "validation", "documents[1]"),
    ("/v2/rerank", b'{"query": "q", "documents": [{"title": "a"}]}', 422, "validation", "'text'"),
    ("/v2/rerank", b'{"query": "q", "documents": ["a"], "top_n": 0}', 422, "validation", "top_n"),
    ("/v2/rerank", b'{"query": "q", "return_documents": true, "documents": [{"text": "a", "m": '
                   + b"[" * 40 + b"]" * 40 + b"}]}", 422, "validation", "documents[0] nests deeper than 32"),
    ("/predict", b'{"pairs": [["a", "b", "c"]]}', 422, "validation", "pairs[0]"),
    ("/predict", b'{"pairs": "ab"}', 422, "validation", "pairs"),
    ("/predict", b'{"inputs": "one text"}', 422, "validation", "inputs must be a pair of strings"),
    ("/predict", b'{"inputs": [["a", "b"], ["c"]]}', 422, "validation", "inputs[1] must be a pair"),
    ("/predict", b'{"inputs": []}', 422, "validation", "`inputs` cannot be empty"),
    ("/predict", b'{"inputs": ["a", "b"], "pairs": [["a", "b"]]}', 422, "validation", "either `pairs` or"),
    ("/predict", b'{}', 422, "validation", "either `pairs` or"),
    ("/nowhere", b"{}", 404, "not_found", "Not Found"),
    # Valid JSON, but a lone surrogate is not text: the tokenizer (and the UTF-8 answer) cannot take it.
    ("/rerank", b'{"query": "q", "texts": ["a", "b\\ud800"]}', 422, "validation", "texts[1] is not valid Unicode"),
    ("/rerank", b'{"query": "x\\udfff", "texts": ["a"]}', 422, "validation", "query"),
    ("/predict", b'{"inputs": ["a", "\\udc00"]}', 422, "validation", "inputs[1] is not valid Unicode"),
    ("/v1/rerank", b'{"query": "q", "return_documents": true, "documents": [{"text": "a", "m": {"\\ud800": 1}}]}',
     422, "validation", "documents[0] is not valid Unicode"),
    # Bodies json.loads cannot take (bad UTF-8, nesting deeper than Python's recursion limit) are malformed JSON too.
    ("/rerank", b'{"query": "q", "texts": ["a\xff"]}', 400, "malformed_json", "malformed JSON body: 'utf-8' codec"),
    ("/rerank", b'{"query": "q", "texts": ["a"], "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}", 400,
     "malformed_json", "malformed JSON body: maximum recursion depth"),
])
def test_bad_input_gets_documented_status(server, path, content, status, error_type, fragment):
    headers = {**AUTH, "Content-Type": "application/json"}
    response = httpx.post(server.url + path, content=content, headers=headers, timeout=30)
    assert response.status_code == status
    body = response.json()
    assert body["error_type"] == error_type
    assert fragment in body["error"]
    assert body["detail"] == body["error"]  # what Jina's and infinity's clients read
    assert httpx.get(server.url + "/health").status_code == 200  # still alive


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_a_body_not_sent_as_json_is_a_clear_415(server, content_type):
    # `curl -d` and `requests.post(url, data=json.dumps(...))` send JSON without saying so.
    headers = {**AUTH, "Content-Type": content_type}
    response = httpx.post(server.url + "/rerank", content=b'{"query": "q", "texts": ["a"]}', headers=headers)
    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]
    vendor = httpx.post(server.url + "/rerank", content=b'{"query": "q", "texts": ["a"]}',
                        headers={**AUTH, "Content-Type": "application/vnd.api+json; charset=utf-8"})
    assert vendor.status_code == 200


def test_null_return_documents_means_false_and_health_answers_head(server):
    data = post(server, "/v1/rerank", {"query": QUERY, "documents": DOCS, "return_documents": None}).json()
    assert len(data["results"]) == len(DOCS) and all("document" not in r for r in data["results"])
    assert httpx.head(server.url + "/health").status_code == 200


# ---------------------------------------------------------------------------------------------- limits
def test_too_many_documents_is_413(server):
    response = post(server, "/rerank", {"query": QUERY, "texts": ["a"] * 101})
    assert response.status_code == 413
    assert "101" in response.json()["error"] and "100" in response.json()["error"]


def test_too_long_document_or_query_is_413(server):
    response = post(server, "/v2/rerank", {"query": QUERY, "documents": ["ok", "x" * 2001]})
    assert response.status_code == 413 and "documents[1]" in response.json()["error"]
    response = post(server, "/rerank", {"query": "q" * 2001, "texts": ["ok"]})
    assert response.status_code == 413 and "query" in response.json()["error"]
    response = post(server, "/predict", {"pairs": [["a", "b"], ["c", "d" * 2001]]})
    assert response.status_code == 413 and "pairs[1][1]" in response.json()["error"]
    # TEI's `inputs` are named as the client sent them.
    response = post(server, "/predict", {"inputs": [["a", "b"], ["c", "d" * 2001]]})
    assert response.status_code == 413 and "inputs[1][1]" in response.json()["error"]
    response = post(server, "/predict", {"inputs": ["a" * 2001, "b"]})
    assert response.status_code == 413 and "inputs[0] has" in response.json()["error"]
    response = post(server, "/rerank", {"query": QUERY, "texts": ["ok", "x" * 2001]})
    assert response.status_code == 413 and "texts[1]" in response.json()["error"]


def test_body_over_limit_is_413_declared_or_chunked(server):
    big = json.dumps({"query": QUERY, "texts": ["word " * 300] * 50}).encode()  # ~75 KB > 64 KiB
    response = httpx.post(server.url + "/rerank", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error_type"] == "payload_too_large"

    def chunks():  # no Content-Length: the limit must hold while streaming
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    headers = {**AUTH, "Content-Type": "application/json"}
    response = httpx.post(server.url + "/rerank", content=chunks(), headers=headers)
    assert response.status_code == 413


def test_metrics_count_requests_errors_and_batches(server):
    post(server, "/rerank", {"query": QUERY, "texts": DOCS})
    post(server, "/rerank", {"query": "", "texts": DOCS})
    text = httpx.get(server.url + "/metrics", headers=AUTH).text
    assert _metric(text, 'crossencoder_requests_total{endpoint="/rerank",status="200"}') >= 1
    assert _metric(text, 'crossencoder_request_errors_total{endpoint="/rerank",error_type="validation"}') >= 1
    assert _metric(text, "crossencoder_batch_pairs_sum") >= len(DOCS)
    assert _metric(text, 'crossencoder_request_duration_seconds_count{endpoint="/rerank"}') >= 2
    assert "crossencoder_queue_depth" in text


def test_info_and_openapi(server):
    info = httpx.get(server.url + "/info", headers=AUTH).json()
    assert info["model"] == "tiny" and info["num_labels"] == 1 and info["limits"]["max_documents"] == 100
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/rerank", "/v1/rerank", "/v2/rerank", "/predict", "/health", "/ready", "/metrics"} <= paths.keys()


def test_cors_is_off_by_default_and_on_when_asked(server, tiny_model):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    response = httpx.options(server.url + "/rerank", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    with live_server(tiny_model, api_key=API_KEY, cors_origins=("https://app.example",)) as live:
        response = httpx.options(live.url + "/rerank", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(live.url + "/rerank", headers={**preflight, "Origin": "https://evil.example"})
        assert other.status_code == 400
        # SDKs add their own headers (Cohere's X-Client-Name); the preflight must allow them.
        sdk = httpx.options(live.url + "/rerank", headers={**preflight, "Access-Control-Request-Headers":
                                                           "authorization,content-type,x-client-name"})
        assert sdk.status_code == 200


def test_the_app_works_mounted_under_a_prefix(tiny_model):
    from fastapi import FastAPI

    from crossencoder.server import ServerSettings, create_app
    from server_helpers import LiveServer

    rerank_app = create_app(tiny_model, ServerSettings(api_key=API_KEY))
    unstarted = FastAPI()
    unstarted.mount("/api", rerank_app)
    live = LiveServer(unstarted).start()
    try:  # a parent that does not run the mounted app's lifespan gets told what is missing
        response = post(live, "/api/rerank", {"query": QUERY, "texts": DOCS})
        assert response.status_code == 503 and "lifespan" in response.json()["error"]
    finally:
        live.stop()
    parent = FastAPI(lifespan=lambda _: rerank_app.router.lifespan_context(rerank_app))  # as docs/server.md
    parent.mount("/api", rerank_app)
    live = LiveServer(parent).start()
    try:
        assert httpx.get(live.url + "/api/health").status_code == 200  # probes stay open under a prefix
        assert post(live, "/api/rerank", {"query": QUERY, "texts": DOCS}).status_code == 200
        metrics = httpx.get(live.url + "/api/metrics", headers=AUTH).text
        assert _metric(metrics, 'crossencoder_requests_total{endpoint="/rerank",status="200"}') == 1
    finally:
        live.stop()


def test_route_path_strips_only_a_whole_mount_prefix():
    from crossencoder.server.middleware import route_path

    assert route_path({"path": "/api/rerank", "root_path": "/api"}) == "/rerank"
    assert route_path({"path": "/api", "root_path": "/api"}) == "/"
    assert route_path({"path": "/apiary/rerank", "root_path": "/api"}) == "/apiary/rerank"
    assert route_path({"path": "/rerank"}) == "/rerank"
