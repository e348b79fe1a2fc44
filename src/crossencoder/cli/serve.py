"""``crossencoder serve``: run the rerank HTTP server (TEI / Cohere / Jina compatible)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import os
import socket

from crossencoder.cli.common import InputError, add_model_arguments, load_model

API_KEY_ENV = "CROSSENCODER_API_KEY"

# The option of each ServerSettings field that `serve` sets (the others keep their defaults).
SETTING_FLAGS = {
    "served_model_name": "--served-model-name", "max_documents": "--max-documents",
    "max_document_chars": "--max-document-chars", "max_body_bytes": "--max-body-bytes",
    "request_timeout": "--request-timeout", "max_queue": "--max-queue", "max_connections": "--max-connections",
    "max_batch_pairs": "--max-batch-pairs", "max_wait_ms": "--max-wait-ms", "batch_size": "--batch-size",
    "max_batch_tokens": "--max-batch-tokens", "cors_origins": "--cors-origin", "score_activation": "--scores",
}

EPILOG = """\
examples:
  crossencoder serve -m cross-encoder/ms-marco-MiniLM-L6-v2
  CROSSENCODER_API_KEY=secret crossencoder serve -m ./my-reranker --port 9000 --backend onnx
  curl -s localhost:8080/rerank -H 'Content-Type: application/json' \\
       -d '{"query": "berlin population", "texts": ["Berlin has 3.5M people.", "Paris is in France."]}'
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command to the CLI's subcommands."""
    parser = subparsers.add_parser(
        "serve", help="run the rerank HTTP server",
        description="Serve a cross-encoder over HTTP: POST /rerank (TEI), /v1/rerank and /v2/rerank (Cohere, "
                    "Jina), /predict; GET /health, /ready, /info, /metrics, /docs. Concurrent requests are "
                    "merged into shared model calls.",
        epilog=EPILOG,
    )
    add_model_arguments(parser, default=None)

    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    net.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    net.add_argument("--api-key", default=None,
                     help=f"require 'Authorization: Bearer KEY' (default: env {API_KEY_ENV}; unset = no auth)")
    net.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                     help="allow browser calls from ORIGIN (repeatable; CORS is off unless given)")
    net.add_argument("--served-model-name", help="model name reported in responses (default: --model)")
    net.add_argument("--scores", choices=["model", "sigmoid"], default="model",
                     help="model: the model's own activation, as rank()/predict() (raw logits for models that "
                          "declare none, e.g. ms-marco-MiniLM-L6-v2); sigmoid: sigmoid(logit) in [0, 1], as TEI "
                          "computes and Cohere clients expect (default: model)")
    net.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                     help="server log level")

    limits = parser.add_argument_group("limits and batching")
    limits.add_argument("--max-documents", type=int, default=1000,
                        help="documents (or pairs) per request, 413 above (default 1000)")
    limits.add_argument("--max-document-chars", type=int, default=32_768,
                        help="characters per query/document, 413 above (default 32768)")
    limits.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024,
                        help="request body size, 413 above (default 8 MiB)")
    limits.add_argument("--request-timeout", type=float, default=60.0,
                        help="seconds a request may wait for its scores, 504 after; also the time a client "
                             "may take to send its body, 408 after (default 60)")
    limits.add_argument("--max-queue", type=int, default=128,
                        help="requests waiting for the model, 429 when full (default 128)")
    limits.add_argument("--max-connections", type=int, default=256,
                        help="requests handled at once, 503 with Retry-After above; uvicorn refuses connections "
                             "beyond twice this (default 256)")
    limits.add_argument("--max-batch-pairs", type=int, default=256,
                        help="pairs merged from concurrent requests into one model call (default 256)")
    limits.add_argument("--max-wait-ms", type=float, default=2.0,
                        help="how long to wait for more requests to merge (default 2 ms)")
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Validate the options, load the model, then serve until SIGTERM / Ctrl-C; returns the exit status.

    Raises:
        InputError: a bad option or a missing ``server`` extra (one-line error on the command line).
    """
    try:
        import uvicorn

        from crossencoder.server import ServerSettings, SettingsError, create_app
    except ImportError as exc:
        raise InputError(f"crossencoder serve needs the server extra ({exc.name} is missing): "
                         "pip install 'crossencoder[server]'") from None

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {args.port}.")
    if not args.host.strip():
        raise InputError("--host is empty: use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface).")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    try:
        settings = ServerSettings(
            served_model_name=args.served_model_name or args.model, api_key=api_key,
            max_documents=args.max_documents, max_document_chars=args.max_document_chars,
            max_body_bytes=args.max_body_bytes, request_timeout=args.request_timeout, max_queue=args.max_queue,
            max_connections=args.max_connections, max_batch_pairs=args.max_batch_pairs,
            max_wait_ms=args.max_wait_ms, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
            cors_origins=tuple(args.cors_origin), score_activation=args.scores,
        )
    except SettingsError as exc:
        # Name what the user typed, not the Python field behind it.
        if exc.field == "api_key":
            source = "--api-key" if args.api_key is not None else f"the environment variable {API_KEY_ENV}"
        else:
            source = SETTING_FLAGS.get(exc.field, exc.field)
        raise InputError(f"{source} {exc.problem}") from None
    log = logging.getLogger("crossencoder.serve")
    if not api_key and not _is_loopback(args.host):
        log.warning("Serving on %s without an API key: anyone who can reach this address can use the model. "
                    "Set --api-key or %s.", args.host, API_KEY_ENV)
    _check_can_listen(args.host, args.port)  # before the (slow) model load
    model = load_model(args)  # before binding: a bad model is a one-line error, not a half-started server
    if settings.score_activation == "sigmoid" and model.num_labels > 1:
        raise InputError(f"--scores sigmoid maps 1-label re-ranker scores; this model has {model.num_labels} "
                         "labels, whose /predict scores are softmax probabilities. Leave --scores out.")
    app = create_app(model, settings)
    # uvicorn's own cap (a plain-text 503) is only a backstop: the app answers JSON + Retry-After well before it.
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level,
        limit_concurrency=2 * settings.max_connections,
        # Let in-flight requests finish on SIGTERM/Ctrl-C, but never hang longer than one request may take: up to
        # request_timeout to send its body, then up to request_timeout for its scores.
        timeout_graceful_shutdown=math.ceil(2 * settings.request_timeout) + 5, server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def _check_can_listen(host: str, port: int) -> None:
    """Raise InputError when ``host:port`` cannot be served (unknown host, port in use, not an address of this
    machine), as uvicorn would only find out after the model has loaded."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r} cannot be resolved ({exc.strerror}).") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}.") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
