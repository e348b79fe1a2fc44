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
    # Errors name the option the user typed, not the ServerSettings field behind it.
    ("--max-queue", "0", "--max-queue must be a positive integer, got 0"),
    ("--request-timeout", "0", "--request-timeout must be > 0"), ("--port", "70000", "--port"),
    # Unbounded waits would hang every request and the graceful shutdown.
    ("--request-timeout", "inf", "--request-timeout must be"), ("--max-wait-ms", "inf", "--max-wait-ms must be"),
    ("--max-wait-ms", "nan", "--max-wait-ms must be"), ("--host", "", "--host is empty"),
    ("--max-documents", "-1", "--max-documents must be"), ("--max-document-chars", "0", "--max-document-chars must"),
    ("--max-body-bytes", "0", "--max-body-bytes must"), ("--max-connections", "0", "--max-connections must"),
    ("--max-batch-pairs", "0", "--max-batch-pairs must"), ("--batch-size", "0", "--batch-size must"),
    ("--max-batch-tokens", "0", "--max-batch-tokens must"), ("--api-key", "", "--api-key must not be empty"),
    ("--host", "192.0.2.1", "cannot listen on 192.0.2.1"),  # TEST-NET-1: never an address of this machine
])
def test_serve_rejects_bad_limits_before_loading(tiny_model_dir, capsys, option, value, fragment):
    assert main(["serve", "-m", str(tiny_model_dir), option, value]) == 1
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert "_" not in err.split(":", 2)[2].split(" must")[0]  # no settings field name such as max_queue


@pytest.mark.parametrize(("options", "env_key", "message"), [
    # A key read from a secret file often keeps its newline; HTTP cannot send it, so every request would get 401.
    ([], "secret\n", "the environment variable CROSSENCODER_API_KEY has leading or trailing whitespace"),
    (["--api-key", " secret"], None, "--api-key has leading or trailing whitespace"),
    (["--api-key", "sec\tret"], "fine", "--api-key has leading or trailing whitespace or a control character"),
])
def test_serve_names_where_a_bad_key_came_from(tmp_path, capsys, monkeypatch, options, env_key, message):
    if env_key is None:
        monkeypatch.delenv("CROSSENCODER_API_KEY", raising=False)
    else:
        monkeypatch.setenv("CROSSENCODER_API_KEY", env_key)
    # The model path does not exist: the key must be refused first.
    assert main(["serve", "-m", str(tmp_path / "missing"), "--port", str(free_port()), *options]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"crossencoder: error: {message}") and len(err.splitlines()) == 1


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


def test_graceful_shutdown_waits_for_a_body_upload_and_its_scoring(tiny_model_dir, monkeypatch):
    import uvicorn

    seen = {}

    def fake_run(server: uvicorn.Server) -> None:
        seen["grace"] = server.config.timeout_graceful_shutdown
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    assert main(["serve", "-m", str(tiny_model_dir), "--port", str(free_port()), "--request-timeout", "2.5"]) == 0
    # A request may take --request-timeout to upload its body (408 after), then as long again for its scores.
    assert seen["grace"] == 2 * 2.5 + 5
