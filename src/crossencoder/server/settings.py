"""Settings of the rerank server: limits, batching, auth and CORS, with their defaults in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


MAX_REQUEST_TIMEOUT = 3600.0
MAX_WAIT_MS = 10_000.0


class SettingsError(ValueError):
    """A bad :class:`ServerSettings` value; ``field`` names the setting and ``problem`` says what is wrong with it,
    so a front end (``crossencoder serve``) can name the option or environment variable the user typed instead.

    Args:
        field: The :class:`ServerSettings` field, e.g. ``"max_queue"``.
        problem: What is wrong, without the name, e.g. ``"must be a positive integer, got 0."``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ServerSettings:
    """Everything that shapes the server's behaviour besides the model itself.

    Memory stays bounded: at most ``max_connections`` requests are handled at once, each with a body of at most
    ``max_body_bytes``, and at most ``max_queue`` parsed requests (each with at most ``max_documents`` texts of at
    most ``max_document_chars`` characters) wait for the model.

    Args:
        served_model_name: Model name reported in responses and ``/info``.
        api_key: If set, every endpoint except ``/health``, ``/ready`` and the API docs needs
            ``Authorization: Bearer <api_key>`` (401 otherwise); OpenAPI declares it, so ``/docs`` can send it.
            It cannot have surrounding whitespace or control characters, which HTTP headers cannot carry.
        max_documents: Maximum documents (rerank) or pairs (predict) per request (413 above).
        max_document_chars: Maximum characters of a query or document (413 above).
        max_body_bytes: Maximum request body size; checked before the body is parsed (413 above).
        request_timeout: Seconds a request may wait for its scores, queueing included (504 after), and seconds
            a client may take to send its body (408 after).
        max_queue: Maximum requests waiting for the model (429 with ``Retry-After`` when full).
        max_connections: Maximum requests handled at once (503 with ``Retry-After`` above; probes and metrics
            are exempt). ``crossencoder serve`` also has uvicorn drop connections beyond twice this number.
        max_batch_pairs: The worker merges queued requests until a model call holds this many pairs.
        max_wait_ms: How long the worker waits for more requests to merge before running a smaller batch.
        batch_size: Maximum pairs per forward pass inside a model call (passed to ``predict``).
        max_batch_tokens: Maximum padded tokens per forward pass (None: the model's default).
        cors_origins: Origins allowed by CORS; empty (the default) disables CORS.
        retry_after: Seconds sent in the ``Retry-After`` header of 429 and 503 answers.
        score_activation: ``"model"`` (default): scores use the model's own activation, exactly as
            ``CrossEncoder.rank`` / ``predict`` (raw logits for models that declare Identity, such as
            cross-encoder/ms-marco-MiniLM-L6-v2). ``"sigmoid"``: 1-label scores are ``sigmoid(logit)`` in [0, 1],
            what TEI computes and Cohere clients expect.
    """

    served_model_name: str = "crossencoder"
    api_key: str | None = None
    max_documents: int = 1000
    max_document_chars: int = 32_768
    max_body_bytes: int = 8 * 1024 * 1024
    request_timeout: float = 60.0
    max_queue: int = 128
    max_connections: int = 256
    max_batch_pairs: int = 256
    max_wait_ms: float = 2.0
    batch_size: int = 32
    max_batch_tokens: int | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    retry_after: int = 1
    score_activation: Literal["model", "sigmoid"] = "model"

    def __post_init__(self) -> None:
        """Check every value.

        Raises:
            SettingsError: a value out of range (the error names its field).
        """
        for name in ("max_documents", "max_document_chars", "max_body_bytes", "max_queue", "max_connections",
                     "max_batch_pairs", "batch_size", "retry_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SettingsError(name, f"must be a positive integer, got {value!r}.")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise SettingsError("max_batch_tokens",
                                f"must be a positive integer or None, got {self.max_batch_tokens!r}.")
        # Bounded, not just positive: an infinite wait or timeout would hang requests and graceful shutdown.
        if not 0 < self.request_timeout <= MAX_REQUEST_TIMEOUT:
            raise SettingsError("request_timeout", f"must be > 0 and at most {MAX_REQUEST_TIMEOUT:g} seconds, "
                                                   f"got {self.request_timeout!r}.")
        if not 0 <= self.max_wait_ms <= MAX_WAIT_MS:
            raise SettingsError("max_wait_ms", f"must be between 0 and {MAX_WAIT_MS:g}, got {self.max_wait_ms!r}.")
        if self.score_activation not in ("model", "sigmoid"):
            raise SettingsError("score_activation", f"must be 'model' or 'sigmoid', got {self.score_activation!r}.")
        if self.api_key is not None:
            if not self.api_key:
                raise SettingsError("api_key", "must not be empty; leave it unset to disable authentication.")
            # HTTP strips the spaces around a header value and cannot carry control characters, so such a key
            # (typically a secret file's trailing newline) could never match: every request would get 401.
            if self.api_key != self.api_key.strip() or not self.api_key.isprintable():
                raise SettingsError("api_key", "has leading or trailing whitespace or a control character (a "
                                               "newline from a secret file?), which no HTTP client can send.")
