"""Helpers of the server tests: the real app under uvicorn on a free loopback port, in a thread, and a model
that can be held busy on purpose."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from crossencoder import CrossEncoder
from crossencoder.server import ServerSettings, create_app

API_KEY = "test-key-123"


class LiveServer:
    """A uvicorn server running ``app`` on 127.0.0.1 in a background thread."""

    def __init__(self, app) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30) -> None:
        """Ask for a graceful shutdown (what SIGTERM does) and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


@contextmanager
def live_server(model, **settings) -> Iterator[LiveServer]:
    server = LiveServer(create_app(model, ServerSettings(**settings))).start()
    try:
        yield server
    finally:
        server.stop()


class GatedModel:
    """A CrossEncoder whose model call (``logits_with_token_counts``) blocks until ``gate`` is set, to hold the
    worker busy on purpose."""

    def __init__(self, model: CrossEncoder) -> None:
        self._model = model
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def logits_with_token_counts(self, pairs, **kwargs):
        self.calls.append(len(pairs))
        self.entered.set()
        assert self.gate.wait(30), "test never opened the gate"
        return self._model.logits_with_token_counts(pairs, **kwargs)
