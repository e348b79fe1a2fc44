"""Pure ASGI middleware: metrics, the in-flight request limit, API-key auth, the request-body size limit and the
answer to unexpected errors.

They run before FastAPI parses anything, so an unauthenticated or oversized request costs neither a parse nor
a buffered body, and every answer (errors included) is counted.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from crossencoder.server.metrics import Metrics, endpoint_label

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Reachable without an API key: probes and the API docs.
OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
# Never refused for load: probes and metrics.
UNCOUNTED_PATHS = frozenset({"/health", "/ready", "/metrics"})


def mark_error(scope: Scope, error_type: str) -> None:
    """Record the error kind of a request, for the ``crossencoder_request_errors`` metric."""
    scope.setdefault("state", {})["error_type"] = error_type


def error_body(message: str, error_type: str) -> dict[str, str]:
    """The JSON body of every error answer (see ``schemas.ErrorResponse``).

    ``detail`` repeats ``error`` because clients of FastAPI-based servers (Jina's, infinity's) read that name.
    """
    return {"error": message, "error_type": error_type, "detail": message}


async def send_error(
    scope: Scope, send: Send, status: int, message: str, error_type: str, headers: dict[str, str] | None = None
) -> None:
    """Answer with the server's JSON error body."""
    mark_error(scope, error_type)
    body = json.dumps(error_body(message, error_type)).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The request path inside this app: without the prefix (``root_path``) it is mounted or proxied under."""
    path, root = scope["path"], scope.get("root_path", "")
    # "/api" is the prefix of "/api/rerank", not of "/apiary".
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("", "/"):
        return path[len(root):] or "/"
    return path


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


class MetricsMiddleware:
    """Count every request by endpoint and status, time it, and count errors by kind."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app dies before answering

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = endpoint_label(route_path(scope))
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            if status >= 400:
                error_type = scope.get("state", {}).get("error_type", "internal" if status >= 500 else "other")
                self.metrics.errors.labels(endpoint, error_type).inc()


class UnexpectedErrorMiddleware:
    """Answer an exception that no handler turned into an answer with a JSON 500, and log it once.

    Starlette's outermost ``ServerErrorMiddleware`` answers too, but always re-raises afterwards so that the server
    logs the error: uvicorn's "Exception in ASGI application" traceback would follow the app's own log entry, two
    entries for one failure. Installed innermost, this one logs with the request's method and path, answers, and
    ends the request normally, so every middleware sees an ordinary 500 (CORS adds its headers to it). When the
    answer has already started there is nothing left to send: the exception goes on, unlogged here, for the server
    to log and to drop the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answering = False

        async def send_watched(message: Message) -> None:
            nonlocal answering
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except Exception as exc:
            if answering:
                raise
            logger.error("Unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            await send_error(scope, send, 500, "internal server error", "internal")


class ConcurrencyLimitMiddleware:
    """Answer 503 with ``Retry-After`` while ``max_requests`` requests are already being handled.

    Probes and metrics are neither counted nor refused, so an overloaded server still reports itself alive.
    """

    def __init__(self, app: ASGIApp, max_requests: int, retry_after: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.retry_after = {"Retry-After": str(retry_after)}
        self.active = 0  # only touched on the event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in UNCOUNTED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_requests:
            await send_error(scope, send, 503, f"server busy: {self.active} requests in flight; retry later",
                             "overloaded", self.retry_after)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


class ApiKeyMiddleware:
    """Require ``Authorization: Bearer <key>`` outside :data:`OPEN_PATHS`; compare in constant time."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        scheme, _, token = (_header(scope, b"authorization") or b"").partition(b" ")
        # compare_digest runs even for a wrong scheme, so timing does not reveal which part was wrong.
        valid = hmac.compare_digest(token.strip(), self.key)
        if not (valid and scheme.lower() == b"bearer"):
            await send_error(scope, send, 401, "missing or invalid API key", "unauthorized",
                             {"WWW-Authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes`` with 413 before they are parsed, and stop work for clients that left.

    A declared ``Content-Length`` over the limit is rejected without reading the body; otherwise the body is read
    (at most ``max_bytes`` are buffered, so chunked uploads cannot grow memory) and handed on to the app. A body
    not complete within ``timeout`` seconds is answered 408: a client that stalls mid-upload (or sends a slow
    trickle) would otherwise hold one of the in-flight request slots forever. While the app works, the connection
    is watched: a client that disconnects before its answer starts has its handling cancelled (a request still
    queued for the model is dropped). Both disconnects are counted with nginx's status 499 (client closed
    request), not as server errors.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = f"request body is larger than the limit of {self.max_bytes} bytes"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(scope, send, 413, too_large, "payload_too_large")
            return
        try:
            body = await asyncio.wait_for(self._read_body(receive), self.timeout)
        except asyncio.TimeoutError:  # not the builtin on Python 3.10
            await send_error(scope, send, 408, f"the request body was not received within {self.timeout:g} s",
                             "timeout", {"Connection": "close"})
            return
        except _ClientLeft:
            await _client_left(scope, send)
            return
        except _TooLarge:
            await send_error(scope, send, 413, too_large, "payload_too_large")
            return
        replayed = False
        answering = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.shield(left)  # `left` owns the connection's receive from here on
            return {"type": "http.disconnect"}

        async def send_watched(message: Message) -> None:
            nonlocal answering
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        left = asyncio.ensure_future(_disconnect(receive))
        handling = asyncio.ensure_future(self.app(scope, replay, send_watched))
        try:
            await asyncio.wait((left, handling), return_when=asyncio.FIRST_COMPLETED)
            # The server also reports a disconnect once the answer is complete: only one before it counts.
            if not handling.done() and not answering:
                handling.cancel()
                await asyncio.gather(handling, return_exceptions=True)
                await _client_left(scope, send)
                return
            await handling
        finally:
            left.cancel()
            handling.cancel()

    async def _read_body(self, receive: Receive) -> bytes:
        """The whole body (buffering at most ``max_bytes``).

        Raises:
            _TooLarge: the body grows over ``max_bytes``.
            _ClientLeft: the client disconnected before sending it all.
        """
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientLeft
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _TooLarge(Exception):
    """The request body grew over the limit while being read."""


class _ClientLeft(Exception):
    """The client disconnected while its body was being read."""


async def _disconnect(receive: Receive) -> None:
    """Return when the client disconnects (called once the body is read: nothing else arrives before)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _client_left(scope: Scope, send: Send) -> None:
    # Nobody reads this answer (the server drops it); it records the request as 499, not as a server error.
    await send_error(scope, send, 499, "the client disconnected before its answer", "client_disconnected")
