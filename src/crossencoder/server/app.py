"""The FastAPI application: TEI / Cohere / Jina rerank endpoints, ``/predict``, probes and metrics."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossencoder import __version__
from crossencoder.model.inputs import average_orders, with_swapped
from crossencoder.model.ranking import best_first
from crossencoder.server.batcher import MicroBatcher, QueueFullError, ShuttingDownError
from crossencoder.server.metrics import Metrics
from crossencoder.server.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    MetricsMiddleware,
    mark_error,
)
from crossencoder.server.schemas import (
    CohereRerankRequest,
    CohereRerankResponse,
    ErrorResponse,
    InfoResponse,
    PredictRequest,
    PredictResponse,
    RERANK_TAGS,
    RerankRequest,
    TEIPrediction,
    TEIRerankResult,
)
from crossencoder.server.settings import ServerSettings

if TYPE_CHECKING:
    from crossencoder.model.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)

# Documented error answers of the scoring endpoints (shown in the OpenAPI docs).
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed JSON, or a rerank call on a classifier.",
        401: "Missing or wrong API key.",
        413: "Body, document count or document length over the limit.",
        422: "Wrong types, empty query, empty document list.",
        429: "Queue full; retry after `Retry-After` seconds.",
        503: "Too many requests in flight, or shutting down; retry after `Retry-After` seconds.",
        504: "Not scored within the request timeout.",
    }.items()
}


class ApiError(Exception):
    """An error answer: HTTP status, message and machine-readable kind (see :class:`ErrorResponse`)."""

    def __init__(self, status: int, message: str, error_type: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers


def create_app(model: CrossEncoder, settings: ServerSettings | None = None) -> FastAPI:
    """Build the rerank server around a loaded model.

    Endpoints: ``POST /rerank`` (TEI), ``POST /v1/rerank`` and ``/v2/rerank`` (Cohere; Jina's clients use the v1
    shape), ``POST /predict`` (pairs -> scores or labels), ``GET /health``, ``/ready``, ``/info``, ``/metrics``
    (Prometheus) and the OpenAPI docs at ``/docs``. Concurrent requests are merged into shared model calls by a
    :class:`~crossencoder.server.batcher.MicroBatcher` that starts and stops (draining queued work) with the app's
    lifespan.

    Args:
        model: A loaded :class:`~crossencoder.CrossEncoder`.
        settings: Limits, batching, auth and CORS (defaults: :class:`ServerSettings`).

    Returns:
        The ASGI app; serve it with uvicorn (``crossencoder serve`` does).

    Example:
        >>> import uvicorn
        >>> from crossencoder import CrossEncoder
        >>> from crossencoder.server import ServerSettings, create_app
        >>> app = create_app(CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2"), ServerSettings(api_key="secret"))
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)
    """
    settings = settings or ServerSettings()
    metrics = Metrics()
    batcher = MicroBatcher(
        model, max_queue=settings.max_queue, max_batch_pairs=settings.max_batch_pairs,
        max_wait_ms=settings.max_wait_ms, batch_size=settings.batch_size,
        max_batch_tokens=settings.max_batch_tokens, metrics=metrics,
    )
    retry = {"Retry-After": str(settings.retry_after)}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(
        title="crossencoder rerank server", version=__version__, lifespan=lifespan,
        description="Re-ranking and pair scoring with a cross-encoder; TEI, Cohere and Jina compatible.",
    )
    app.state.model = model
    app.state.settings = settings
    app.state.batcher = batcher
    app.state.metrics = metrics

    # ------------------------------------------------------------------ helpers
    def check_limits(texts: list[str], n_items: int, what: str) -> None:
        if n_items > settings.max_documents:
            raise ApiError(413, f"too many {what}: {n_items}; the limit is {settings.max_documents} per request",
                           "payload_too_large")
        for i, text in enumerate(texts):
            if len(text) > settings.max_document_chars:
                raise ApiError(413, f"{_describe(i, n_items, what)} has {len(text)} characters; the limit is "
                                    f"{settings.max_document_chars}", "payload_too_large")

    async def logits_for(pairs: list[tuple[str, str]]) -> torch.Tensor:
        try:
            return await asyncio.wait_for(batcher.submit(pairs), settings.request_timeout)
        except QueueFullError as exc:
            raise ApiError(429, f"server busy: {exc}; retry later", "overloaded", retry) from None
        except ShuttingDownError:
            raise ApiError(503, "the server is shutting down", "unavailable", retry) from None
        except asyncio.TimeoutError:
            raise ApiError(504, f"not scored within the request timeout of {settings.request_timeout:g} s",
                           "timeout") from None
        except Exception:  # noqa: BLE001 - the batcher logged the traceback; clients get no internals
            raise ApiError(500, "internal server error", "internal") from None

    def activate(logits: torch.Tensor, raw: bool) -> torch.Tensor:
        """Scores from ``[n, num_labels]`` logits: the model's activation (as ``CrossEncoder.predict``) or sigmoid."""
        if raw:
            return logits
        if settings.score_activation == "sigmoid" and model.num_labels == 1:
            return torch.sigmoid(logits)
        return model.activation_fn(logits) if model.activation_fn is not None else logits

    async def rerank_scores(query: str, texts: list[str], raw: bool) -> list[tuple[int, float]]:
        if model.num_labels != 1:
            raise ApiError(400, f"this model is a classifier with {model.num_labels} labels; rerank needs a "
                                "1-label model: use POST /predict", "validation")
        check_limits([query, *texts], len(texts), "documents")
        scores = activate(await logits_for([(query, text) for text in texts]), raw)[:, 0].tolist()
        # Best first; equal scores keep input order and NaN goes last, exactly like CrossEncoder.rank().
        return [(i, scores[i]) for i in best_first(scores)]

    # ------------------------------------------------------------------ scoring endpoints
    @app.post("/rerank", response_model=list[TEIRerankResult] | CohereRerankResponse,
              response_model_exclude_none=True, responses=_ERRORS, tags=["rerank"],
              summary="Rerank (Hugging Face TEI schema; Cohere's, as infinity serves it, when sent `documents`)")
    async def rerank_tei(body: RerankRequest) -> Any:
        if isinstance(body, CohereRerankRequest):
            return await rerank_cohere(body, "1")
        ranked = await rerank_scores(body.query, body.texts, body.raw_scores)
        return [{"index": i, "score": s, "text": body.texts[i] if body.return_text else None} for i, s in ranked]

    async def rerank_cohere(body: CohereRerankRequest, version: str) -> dict[str, Any]:
        ranked = await rerank_scores(body.query, body.texts(), raw=False)
        return {
            "id": str(uuid.uuid4()),
            "results": [
                {"index": i, "relevance_score": s, "document": body.document(i) if body.return_documents else None}
                for i, s in ranked[: body.top_n]
            ],
            "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}},
            "model": settings.served_model_name,
        }

    @app.post("/v1/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True,
              responses=_ERRORS, tags=["rerank"], summary="Rerank (Cohere v1 / Jina schema)")
    async def rerank_v1(body: CohereRerankRequest) -> dict[str, Any]:
        return await rerank_cohere(body, "1")

    @app.post("/v2/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True,
              responses=_ERRORS, tags=["rerank"], summary="Rerank (Cohere v2 schema)")
    async def rerank_v2(body: CohereRerankRequest) -> dict[str, Any]:
        return await rerank_cohere(body, "2")

    @app.post("/predict", response_model=PredictResponse | list[TEIPrediction] | list[list[TEIPrediction]],
              response_model_exclude_none=True, responses=_ERRORS, tags=["predict"],
              summary="Score or classify sentence pairs (this server's `pairs` or TEI's `inputs`)")
    async def predict(body: PredictRequest) -> Any:
        pairs = body.pair_list()
        check_limits([text for pair in pairs for text in pair], len(pairs), "pairs")
        logits = await logits_for(with_swapped(pairs) if body.symmetric else pairs)
        if body.symmetric:
            logits = average_orders(logits)
        scores = activate(logits, body.raw_scores)
        if model.num_labels > 1 and not body.raw_scores:
            scores = torch.softmax(scores, dim=1)
        names = [model.id2label.get(i, str(i)) for i in range(model.num_labels)]
        rows = scores.tolist()
        if body.inputs is not None:
            # TEI's answer: every label with its score, best first, per pair.
            tei = [sorted(({"score": s, "label": n} for n, s in zip(names, row)), key=lambda p: -p["score"])
                   for row in rows]
            return tei if body.is_tei_batch else tei[0]
        if model.num_labels == 1:
            return {"results": [{"score": row[0]} for row in rows]}
        best = scores.argmax(dim=1).tolist()
        return {"results": [{"label": names[k], "scores": dict(zip(names, row))} for k, row in zip(best, rows)]}

    # ------------------------------------------------------------------ probes, info, metrics
    @app.get("/health", tags=["ops"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], summary="Readiness: the model is loaded and work is accepted",
             responses={503: {"model": ErrorResponse, "description": "Not started or shutting down."}})
    async def ready() -> Any:
        if not batcher.accepting:
            raise ApiError(503, "not ready: the model worker is not running", "unavailable", retry)
        return {"status": "ready"}

    @app.get("/info", response_model=InfoResponse, tags=["ops"], summary="Model and limits")
    async def info() -> dict[str, Any]:
        return {
            "model": settings.served_model_name,
            "model_path": str(model.model_path) if model.model_path else None,
            "num_labels": model.num_labels,
            "labels": [model.id2label.get(i, str(i)) for i in range(model.num_labels)],
            "max_length": model.max_length,
            "backend": model.backend_name,
            "score_activation": settings.score_activation,
            "device": str(model.device),
            "limits": {
                "max_documents": settings.max_documents, "max_document_chars": settings.max_document_chars,
                "max_body_bytes": settings.max_body_bytes, "request_timeout": settings.request_timeout,
                "max_queue": settings.max_queue,
            },
        }

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        metrics.queue_depth.set(batcher.queue_depth)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ errors
    def error(request: Request, status: int, message: str, error_type: str,
              headers: dict[str, str] | None = None) -> JSONResponse:
        mark_error(request.scope, error_type)
        return JSONResponse({"error": message, "error_type": error_type}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(request, exc.status, exc.message, exc.error_type, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        for problem in problems:
            if problem.get("type") == "json_invalid":
                detail = (problem.get("ctx") or {}).get("error", "invalid JSON")
                return error(request, 400, f"malformed JSON body: {detail}", "malformed_json")
        messages = [_format_problem(p) for p in problems[:5]]
        if len(problems) > 5:
            messages.append(f"... and {len(problems) - 5} more")
        return error(request, 422, "; ".join(messages), "validation")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return error(request, exc.status_code, str(exc.detail), kinds.get(exc.status_code, "http"),
                     getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(request, 500, "internal server error", "internal")

    # Outermost last: metrics see everything, overload is refused first, CORS answers preflights, auth runs before
    # the body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(ConcurrencyLimitMiddleware, max_requests=settings.max_connections,
                       retry_after=settings.retry_after)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _describe(index: int, n_items: int, what: str) -> str:
    """Name text ``index`` of ``[query, *texts]`` (rerank) or of the flattened pairs (predict)."""
    if what == "documents":
        return "the query" if index == 0 else f"documents[{index - 1}]"
    return f"pairs[{index // 2}][{index % 2}]"


def _format_problem(problem: dict[str, Any]) -> str:
    """``documents[2]: Input should be a valid string`` from one pydantic error."""
    location = ""
    loc = list(problem.get("loc", ()))[1:]
    if loc and loc[0] in RERANK_TAGS:
        loc = loc[1:]
    for part in loc:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    message = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
    if not location:
        return "the request body needs a JSON object" if problem.get("type") == "missing" else message
    return f"{location}: {message}"
