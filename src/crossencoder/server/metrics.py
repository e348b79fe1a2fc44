"""Prometheus metrics of one server instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Label values for the path: known endpoints only, so random URLs cannot blow up the series count.
ENDPOINTS = frozenset({"/rerank", "/v1/rerank", "/v2/rerank", "/predict", "/health", "/ready", "/info", "/metrics"})


def endpoint_label(path: str) -> str:
    """The ``endpoint`` label of a request path (``"other"`` for anything unknown)."""
    return path if path in ENDPOINTS else "other"


class Metrics:
    """Request, latency, batching and queue metrics, exported in Prometheus' text format by :meth:`render`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "crossencoder_requests", "HTTP requests by endpoint and status code.",
            ["endpoint", "status"], registry=self.registry,
        )
        self.errors = Counter(
            "crossencoder_request_errors", "Requests answered with an error, by endpoint and error type.",
            ["endpoint", "error_type"], registry=self.registry,
        )
        self.latency = Histogram(
            "crossencoder_request_duration_seconds",
            "Time from request start until the response is complete (its body sent).",
            ["endpoint"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.batch_pairs = Histogram(
            "crossencoder_batch_pairs", "Pairs per model call (requests merged by the micro-batcher).",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
        )
        self.batch_requests = Histogram(
            "crossencoder_batch_requests", "Requests merged into one model call.",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.model_seconds = Histogram(
            "crossencoder_model_duration_seconds", "Time of one model call (tokenization included).",
            registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.pairs = Counter("crossencoder_pairs", "Pairs scored.", registry=self.registry)
        self.queue_depth = Gauge(
            "crossencoder_queue_depth", "Requests waiting for the model.", registry=self.registry
        )

    def render(self) -> bytes:
        """The metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)
