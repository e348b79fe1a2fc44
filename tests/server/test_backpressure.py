"""Back-pressure, timeouts and graceful shutdown, with a model held busy on purpose (deterministic, no sleeps
racing the model)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from crossencoder.server import MicroBatcher, QueueFullError, ServerSettings, ShuttingDownError, create_app
from server_helpers import GatedModel, LiveServer, live_server

QUERY = "berlin population"


def rerank_body(n_docs: int) -> dict:
    return {"query": QUERY, "texts": [f"passage number {i} about Berlin" for i in range(n_docs)]}


def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def queue_depth(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("crossencoder_queue_depth "):
            return float(line.split()[1])
    raise AssertionError("no queue depth metric")


def test_full_queue_answers_429_with_retry_after_then_recovers(tiny_model):
    model = GatedModel(tiny_model)
    with live_server(model, max_queue=2, retry_after=3) as live, httpx.Client(base_url=live.url, timeout=30) as http:
        results: dict[int, httpx.Response] = {}

        def send(i: int, n_docs: int) -> None:
            results[i] = httpx.post(live.url + "/rerank", json=rerank_body(n_docs), timeout=30)

        first = threading.Thread(target=send, args=(0, 1))
        first.start()
        assert model.entered.wait(10)  # request 0 is on the model; the queue is empty
        waiting = [threading.Thread(target=send, args=(i, 2)) for i in (1, 2)]
        for thread in waiting:
            thread.start()
        wait_for(lambda: queue_depth(live.url) == 2)

        rejected = http.post("/rerank", json=rerank_body(2))
        assert rejected.status_code == 429
        assert rejected.headers["retry-after"] == "3"
        assert rejected.json()["error_type"] == "overloaded"

        model.gate.set()
        for thread in [first, *waiting]:
            thread.join(30)
        assert [results[i].status_code for i in range(3)] == [200, 200, 200]
        assert http.post("/rerank", json=rerank_body(2)).status_code == 200
        # The two queued requests were merged into one model call.
        assert model.calls == [1, 4, 2]


def test_too_many_requests_in_flight_is_503_with_retry_after_and_probes_stay_open(tiny_model):
    model = GatedModel(tiny_model)
    with live_server(model, max_connections=2, retry_after=4, cors_origins=("https://app.example",)) as live:
        results: dict[int, httpx.Response] = {}

        def send(i: int) -> None:
            results[i] = httpx.post(live.url + "/rerank", json=rerank_body(2), timeout=30)

        threads = [threading.Thread(target=send, args=(i,)) for i in (0, 1)]
        threads[0].start()
        assert model.entered.wait(10)
        threads[1].start()
        wait_for(lambda: queue_depth(live.url) == 1)  # two requests in flight: one scored, one queued

        refused = httpx.post(live.url + "/rerank", json=rerank_body(2), headers={"Origin": "https://app.example"},
                             timeout=30)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "4"
        # A browser can read the refusal (and its Retry-After) only if it carries the CORS headers.
        assert refused.headers["access-control-allow-origin"] == "https://app.example"
        assert refused.json()["error_type"] == "overloaded"
        assert httpx.get(live.url + "/health").status_code == 200

        model.gate.set()
        for thread in threads:
            thread.join(30)
        assert [results[i].status_code for i in (0, 1)] == [200, 200]
        assert httpx.post(live.url + "/rerank", json=rerank_body(2), timeout=30).status_code == 200


def test_request_timeout_is_504_and_abandoned_work_is_skipped(tiny_model):
    model = GatedModel(tiny_model)
    with live_server(model, request_timeout=0.5) as live:
        results: dict[int, httpx.Response] = {}

        def send(i: int, n_docs: int) -> None:
            results[i] = httpx.post(live.url + "/rerank", json=rerank_body(n_docs), timeout=30)

        first = threading.Thread(target=send, args=(0, 1))
        first.start()
        assert model.entered.wait(10)
        send(1, 3)  # queued behind the busy model until its deadline
        first.join(30)
        assert results[0].status_code == 504 and results[1].status_code == 504
        assert results[1].json()["error"] == "not scored within the request timeout of 0.5 s"
        assert results[1].json()["error_type"] == "timeout"
        model.gate.set()
        send(2, 5)
        assert results[2].status_code == 200
        assert model.calls == [1, 5]  # the timed-out queued request never reached the model


def test_graceful_shutdown_finishes_in_flight_and_queued_requests(tiny_model):
    model = GatedModel(tiny_model)
    live = LiveServer(create_app(model, ServerSettings())).start()
    results: dict[int, httpx.Response] = {}

    def send(i: int, n_docs: int) -> None:
        results[i] = httpx.post(live.url + "/rerank", json=rerank_body(n_docs), timeout=30)

    threads = [threading.Thread(target=send, args=(0, 1))]
    threads[0].start()
    assert model.entered.wait(10)
    threads.append(threading.Thread(target=send, args=(1, 2)))
    threads[1].start()
    wait_for(lambda: queue_depth(live.url) == 1)

    stopper = threading.Thread(target=live.stop)  # what SIGTERM does
    stopper.start()
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):  # no new connections while draining
        httpx.get(live.url + "/health", timeout=2)
    model.gate.set()
    for thread in [*threads, stopper]:
        thread.join(30)
    assert not live.thread.is_alive()
    assert [results[i].status_code for i in (0, 1)] == [200, 200]
    assert len(results[1].json()) == 2


def test_batcher_merges_concurrent_requests_and_slices_results(tiny_model):
    async def main():
        model = GatedModel(tiny_model)
        batcher = MicroBatcher(model, max_queue=8, max_batch_pairs=100)
        await batcher.start()
        first = asyncio.create_task(batcher.submit([("q", "a")]))
        await asyncio.to_thread(model.entered.wait, 10)
        groups = [[(f"q{i}", f"doc {j} of {i}") for j in range(i + 1)] for i in range(4)]
        rest = [asyncio.create_task(batcher.submit(g)) for g in groups]
        await asyncio.sleep(0.05)
        model.gate.set()
        outputs = await asyncio.gather(first, *rest)
        await batcher.stop()
        with pytest.raises(ShuttingDownError):
            await batcher.submit([("q", "a")])
        return model, groups, outputs

    model, groups, outputs = asyncio.run(main())
    assert model.calls == [1, 10]  # 1+2+3+4 queued pairs in one call
    for group, scored in zip(groups, outputs[1:]):
        expected = tiny_model.predict(group, activation_fn=lambda x: x)
        assert scored.logits.shape == (len(group), 1)
        assert scored.logits[:, 0].tolist() == pytest.approx(list(expected), abs=1e-5)
        # Each request is charged its own pairs' tokens, not the merged call's.
        assert scored.tokens == sum(tiny_model.logits_with_token_counts(group)[1])


def test_batcher_queue_bound_and_model_errors_reach_every_request(tiny_model):
    class Broken(GatedModel):
        def logits_with_token_counts(self, pairs, **kwargs):
            super().logits_with_token_counts(pairs, **kwargs)  # wait for the gate
            raise RuntimeError("boom")

    async def main():
        model = Broken(tiny_model)
        batcher = MicroBatcher(model, max_queue=1, max_wait_ms=0)
        await batcher.start()
        busy = asyncio.create_task(batcher.submit([("q", "a")]))
        await asyncio.to_thread(model.entered.wait, 10)
        queued = asyncio.create_task(batcher.submit([("q", "b")]))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):  # one on the model, one queued: full
            await batcher.submit([("q", "c")])
        model.gate.set()
        outcomes = await asyncio.gather(busy, queued, return_exceptions=True)
        await batcher.stop()
        return outcomes

    outcomes = asyncio.run(main())
    assert [(type(o), str(o)) for o in outcomes] == [(RuntimeError, "boom")] * 2


def test_model_failure_is_a_500_json_error_and_server_survives(tiny_model):
    class FlakyModel(GatedModel):
        def logits_with_token_counts(self, pairs, **kwargs):
            if len(pairs) == 3:
                raise RuntimeError("kaputt")
            return self._model.logits_with_token_counts(pairs, **kwargs)

    with live_server(FlakyModel(tiny_model)) as live:
        response = httpx.post(live.url + "/rerank", json=rerank_body(3))
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error", "error_type": "internal",
                                   "detail": "internal server error"}
        assert httpx.post(live.url + "/rerank", json=rerank_body(2)).status_code == 200


def test_one_bad_request_does_not_fail_the_requests_merged_with_it(tiny_model):
    class Picky(GatedModel):
        def logits_with_token_counts(self, pairs, **kwargs):
            if any(text == "poison" for _, text in pairs):
                self.calls.append(len(pairs))
                raise RuntimeError("the tokenizer choked")
            return super().logits_with_token_counts(pairs, **kwargs)

    async def main():
        model = Picky(tiny_model)
        batcher = MicroBatcher(model, max_wait_ms=0)
        await batcher.start()
        busy = asyncio.create_task(batcher.submit([("q", "a")]))
        await asyncio.to_thread(model.entered.wait, 10)
        good = asyncio.create_task(batcher.submit([("q", "b"), ("q", "c")]))
        bad = asyncio.create_task(batcher.submit([("q", "poison")]))
        await asyncio.sleep(0.05)
        model.gate.set()
        outcomes = await asyncio.gather(busy, good, bad, return_exceptions=True)
        await batcher.stop()
        return model, outcomes

    model, (busy, good, bad) = asyncio.run(main())
    assert model.calls == [1, 3, 2, 1]  # the merged call failed; each request was then scored on its own
    expected = tiny_model.predict([("q", "b"), ("q", "c")], activation_fn=lambda x: x)
    assert good.logits[:, 0].tolist() == pytest.approx(list(expected), abs=1e-5)
    assert isinstance(bad, RuntimeError) and busy.logits.shape == (1, 1)


def _metric_value(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_a_client_that_disconnects_while_queued_costs_no_model_time(tiny_model):
    model = GatedModel(tiny_model)
    with live_server(model) as live:
        first = threading.Thread(target=httpx.post, args=(live.url + "/rerank",),
                                 kwargs={"json": rerank_body(1), "timeout": 30})
        first.start()
        assert model.entered.wait(10)
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            httpx.post(live.url + "/rerank", json=rerank_body(3), timeout=1)
        gone = 'crossencoder_requests_total{endpoint="/rerank",status="499"}'
        wait_for(lambda: _metric_value(live.url, gone) == 1)
        model.gate.set()
        first.join(30)
        assert httpx.post(live.url + "/rerank", json=rerank_body(5), timeout=30).status_code == 200
        assert model.calls == [1, 5]  # the abandoned request never reached the model
        errors = 'crossencoder_request_errors_total{endpoint="/rerank",error_type="client_disconnected"}'
        assert _metric_value(live.url, errors) == 1


def test_a_client_that_disconnects_mid_upload_is_not_counted_as_a_server_error(tiny_model):
    with live_server(tiny_model) as live:
        host, port = live.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"query\": ")
            time.sleep(0.2)
        label = 'crossencoder_requests_total{endpoint="/rerank",status="%s"}'
        wait_for(lambda: _metric_value(live.url, label % "499") == 1)
        assert _metric_value(live.url, label % "500") == 0
