"""`crossencoder serve` as users run it: a real process, the Cohere SDK, env-var auth, SIGTERM, bad options."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import cohere
import httpx
import pytest

from crossencoder.cli.main import build_parser, main

QUERY = "How many people live in Berlin?"
DOCS = ["Berlin has 3.5 million inhabitants.", "Paris is in France.", "Berlin is known for its museums."]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_process_answers_cohere_sdk_and_stops_cleanly_on_sigterm(tiny_model_dir, tiny_model):
    port = free_port()
    env = {**os.environ, "CROSSENCODER_API_KEY": "env-secret", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "crossencoder.cli.main", "serve", "-m", str(tiny_model_dir), "--port", str(port),
         "--served-model-name", "tiny"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        assert httpx.post(url + "/rerank", json={"query": QUERY, "texts": DOCS}).status_code == 401
        response = cohere.ClientV2(api_key="env-secret", base_url=url).rerank(model="tiny", query=QUERY,
                                                                              documents=DOCS)
        expected = tiny_model.rank(QUERY, DOCS)
        assert [r.index for r in response.results] == [h["corpus_id"] for h in expected]
        assert [r.relevance_score for r in response.results] == pytest.approx([h["score"] for h in expected],
                                                                              abs=1e-5)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn drains, runs the app's shutdown, then re-raises SIGTERM so the exit status tells how it ended.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr and "Traceback" not in stderr


def test_serve_bad_model_is_a_one_line_error(tmp_path, capsys):
    assert main(["serve", "-m", str(tmp_path / "missing"), "--port", str(free_port())]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossencoder: error:") and len(err.splitlines()) == 1


@pytest.mark.parametrize(("option", "value", "fragment"), [
    ("--max-queue", "0", "max_queue"), ("--request-timeout", "0", "request_timeout"), ("--port", "70000", "--port"),
    # Unbounded waits would hang every request and the graceful shutdown.
    ("--request-timeout", "inf", "request_timeout"), ("--max-wait-ms", "inf", "max_wait_ms"),
    ("--max-wait-ms", "nan", "max_wait_ms"), ("--host", "", "--host is empty"),
    ("--host", "192.0.2.1", "cannot listen on 192.0.2.1"),  # TEST-NET-1: never an address of this machine
])
def test_serve_rejects_bad_limits_before_loading(tiny_model_dir, capsys, option, value, fragment):
    assert main(["serve", "-m", str(tiny_model_dir), option, value]) == 1
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_serve_port_in_use_fails_before_the_model_loads(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The model path does not exist: the port must be refused first, before any loading.
        assert main(["serve", "-m", str(tmp_path / "missing"), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1


def test_serve_refuses_sigmoid_scores_for_a_classifier(tiny_nli_model_dir, capsys):
    assert main(["serve", "-m", str(tiny_nli_model_dir), "--scores", "sigmoid", "--port", str(free_port())]) == 1
    assert "--scores sigmoid maps 1-label re-ranker scores" in capsys.readouterr().err


def test_serve_without_the_server_extra_says_what_to_install(tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # what a missing package looks like to `import`
    assert main(["serve", "-m", str(tiny_model_dir)]) == 1
    err = capsys.readouterr().err
    assert "uvicorn is missing" in err and "crossencoder[server]" in err


def test_serve_defaults_to_loopback_without_cors_or_auth():
    args = build_parser().parse_args(["serve", "-m", "some-model"])
    assert (args.host, args.port, args.cors_origin, args.api_key) == ("127.0.0.1", 8080, [], None)
