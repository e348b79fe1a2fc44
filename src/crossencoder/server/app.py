"""The FastAPI application: TEI / Cohere / Jina rerank endpoints, ``/predict``, probes and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import torch
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossencoder import __version__
from crossencoder.files import unicode_problem
from crossencoder.model.inputs import average_orders, with_swapped
from crossencoder.model.ranking import best_first
from crossencoder.server.batcher import MicroBatcher, QueueFullError, Scored, ShuttingDownError
from crossencoder.server.metrics import Metrics, endpoint_label
from crossencoder.server.middleware import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    MetricsMiddleware,
    UnexpectedErrorMiddleware,
    error_body,
    mark_error,
    route_path,
)
from crossencoder.server.schemas import (
    CohereRerankRequest,
    CohereRerankResponse,
    ErrorResponse,
    InfinityRerankRequest,
    InfinityRerankResponse,
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
        408: "The body was not received within the request timeout.",
        413: "Body, document count or document length over the limit.",
        415: "The body is not sent as JSON (`Content-Type: application/json`).",
        422: "Wrong types, empty query, empty document list.",
        429: "Queue full; retry after `Retry-After` seconds.",
        500: "The model failed, or produced scores that are not finite numbers (`non_finite_scores`).",
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

    Endpoints: ``POST /rerank`` (TEI; infinity's schema when sent ``documents``), ``POST /v1/rerank`` and
    ``/v2/rerank`` (Cohere; Jina's clients use the v1 shape), ``POST /predict`` (pairs -> scores or labels),
    ``GET /health``, ``/ready``, ``/info``, ``/metrics`` (Prometheus) and the OpenAPI docs at ``/docs``. Concurrent
    requests are merged into shared model calls by a :class:`~crossencoder.server.batcher.MicroBatcher` that starts
    and stops (draining queued work) with the app's lifespan.

    Args:
        model: A loaded :class:`~crossencoder.CrossEncoder`.
        settings: Limits, batching, auth and CORS (defaults: :class:`ServerSettings`).

    Returns:
        The ASGI app; serve it with uvicorn (``crossencoder serve`` does). Its lifespan starts the model worker:
        to mount it in another app, have the parent run it,
        ``FastAPI(lifespan=lambda _: app.router.lifespan_context(app)).mount("/rerank-api", app)``.

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

    # No redirect from "/rerank/" to "/rerank": TEI answers 404 there, httpx-based clients (the Cohere SDK's) do
    # not follow a 307, and behind a TLS-terminating proxy its Location can point at http://.
    app = FastAPI(
        title="crossencoder rerank server", version=__version__, lifespan=lifespan, redirect_slashes=False,
        description="Re-ranking and pair scoring with a cross-encoder; TEI, Cohere and Jina compatible.",
    )
    app.state.model = model
    app.state.settings = settings
    app.state.batcher = batcher
    app.state.metrics = metrics
    # ApiKeyMiddleware checks the key (in constant time, before the body is read); this dependency only declares
    # the scheme in OpenAPI, so /docs offers "Authorize" and sends the key. It never refuses by itself.
    bearer = HTTPBearer(auto_error=False, scheme_name="ApiKey",
                        description="The server's API key (`--api-key` or CROSSENCODER_API_KEY), sent as "
                                    "`Authorization: Bearer <key>`.")
    protected = [Security(bearer)] if settings.api_key else []

    # ------------------------------------------------------------------ helpers
    def check_texts(texts: list[str], n_items: int, what: str, name_of: Callable[[int], str]) -> None:
        """413 for more than ``max_documents`` items or an over-long text, 422 for a text that is not valid
        Unicode (``name_of(i)`` names ``texts[i]``)."""
        if n_items > settings.max_documents:
            raise ApiError(413, f"too many {what}: {n_items}; the limit is {settings.max_documents} per request",
                           "payload_too_large")
        for i, text in enumerate(texts):
            if len(text) > settings.max_document_chars:
                raise ApiError(413, f"{name_of(i)} has {len(text)} characters; the limit is "
                                    f"{settings.max_document_chars}", "payload_too_large")
            # JSON allows escaped lone surrogates ("\ud800"): refused here, before they join a merged model call.
            if problem := unicode_problem(text, name_of(i)):
                raise ApiError(422, problem, "validation")

    async def logits_for(pairs: list[tuple[str, str]]) -> Scored:
        try:
            return await asyncio.wait_for(batcher.submit(pairs), settings.request_timeout)
        except QueueFullError as exc:
            raise ApiError(429, f"server busy: {exc}; retry later", "overloaded", retry) from None
        except ShuttingDownError as exc:
            raise ApiError(503, str(exc), "unavailable", retry) from None
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

    def require_finite(logits: torch.Tensor, scores: torch.Tensor, what: str, name_of: Callable[[int], str]) -> None:
        """500 ``non_finite_scores`` when a row of ``logits`` ``[n, num_labels]`` or of the ``scores`` made of them
        holds NaN or infinity (``what``: the rows' plural name; ``name_of(i)`` names row ``i`` as the request did).

        JSON has no such numbers (they would go out as ``null``, a ``None`` where clients such as the Cohere SDK
        promise a float), and a ranking built on them is meaningless: the model overflowed, typically in float16.
        """
        finite = torch.isfinite(logits).all(dim=1) & torch.isfinite(scores.reshape(len(logits), -1)).all(dim=1)
        if bool(finite.all()):
            return
        bad = (~finite).nonzero().flatten().tolist()
        logger.error("The model produced non-finite scores (NaN or infinity) for %d of %d %s (first: %s); a "
                     "numeric overflow, e.g. float16 weights: try --dtype float32", len(bad), len(logits), what,
                     name_of(bad[0]))
        raise ApiError(500, f"the model produced scores that are not finite numbers (NaN or infinity) for "
                            f"{len(bad)} of {len(logits)} {what}, first {name_of(bad[0])}; the server's model "
                            "overflowed (logged for its operator)", "non_finite_scores")

    async def rerank_scores(
        query: str, texts: list[str], raw: bool, field: str = "documents"
    ) -> tuple[list[tuple[int, float]], dict[str, int]]:
        """``(index, score)`` best first, and the request's token ``usage`` (``field``: the texts' name in it)."""
        if model.num_labels != 1:
            raise ApiError(400, f"this model is a classifier with {model.num_labels} labels; rerank needs a "
                                "1-label model: use POST /predict", "validation")
        check_texts([query, *texts], len(texts), field, lambda i: f"{field}[{i - 1}]" if i else "the query")
        scored = await logits_for([(query, text) for text in texts])
        activated = activate(scored.logits, raw)
        require_finite(scored.logits, activated, field, lambda i: f"{field}[{i}]")
        scores = activated[:, 0].tolist()
        # Best first; equal scores keep input order, exactly like CrossEncoder.rank().
        ranked = [(i, scores[i]) for i in best_first(scores)]
        return ranked, {"prompt_tokens": scored.tokens, "total_tokens": scored.tokens}

    # ------------------------------------------------------------------ scoring endpoints
    @app.post("/rerank", response_model=list[TEIRerankResult] | InfinityRerankResponse,
              response_model_exclude_none=True, responses=_ERRORS, tags=["rerank"], dependencies=protected,
              summary="Rerank (Hugging Face TEI schema; infinity's when sent `documents`)")
    async def rerank_tei(body: RerankRequest) -> Any:
        if isinstance(body, InfinityRerankRequest):
            return await rerank_infinity(body)
        ranked, _ = await rerank_scores(body.query, body.texts, body.raw_scores, "texts")
        return [{"index": i, "score": s, "text": body.texts[i] if body.return_text else None} for i, s in ranked]

    def results(body: CohereRerankRequest, ranked: list[tuple[int, float]],
                document: Callable[[int], Any]) -> list[dict[str, Any]]:
        """The best ``top_n`` as ``{index, relevance_score[, document]}`` (Cohere's and infinity's result)."""
        return [{"index": i, "relevance_score": s, "document": document(i) if body.return_documents else None}
                for i, s in ranked[: body.top_n]]

    async def rerank_infinity(body: InfinityRerankRequest) -> dict[str, Any]:
        ranked, usage = await rerank_scores(body.query, body.texts(), body.raw_scores)
        return {
            "object": "rerank", "id": str(uuid.uuid4()), "created": int(time.time()),
            "model": settings.served_model_name,
            # infinity returns each document as sent (a string), not Cohere's {"text": ...}.
            "results": results(body, ranked, body.documents.__getitem__),
            "usage": usage,
        }

    async def rerank_cohere(body: CohereRerankRequest, version: str) -> dict[str, Any]:
        ranked, usage = await rerank_scores(body.query, body.texts(), raw=False)
        return {
            "id": str(uuid.uuid4()),
            "results": results(body, ranked, body.document),
            "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}},
            "model": settings.served_model_name,
            "usage": usage,
        }

    @app.post("/v1/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True,
              responses=_ERRORS, tags=["rerank"], dependencies=protected, summary="Rerank (Cohere v1 / Jina schema)")
    async def rerank_v1(body: CohereRerankRequest) -> dict[str, Any]:
        return await rerank_cohere(body, "1")

    @app.post("/v2/rerank", response_model=CohereRerankResponse, response_model_exclude_none=True,
              responses=_ERRORS, tags=["rerank"], dependencies=protected, summary="Rerank (Cohere v2 schema)")
    async def rerank_v2(body: CohereRerankRequest) -> dict[str, Any]:
        return await rerank_cohere(body, "2")

    @app.post("/predict", response_model=PredictResponse | list[TEIPrediction] | list[list[TEIPrediction]],
              response_model_exclude_none=True, responses=_ERRORS, tags=["predict"], dependencies=protected,
              summary="Score or classify sentence pairs (this server's `pairs` or TEI's `inputs`)")
    async def predict(body: PredictRequest) -> Any:
        pairs = body.pair_list()
        check_texts([text for pair in pairs for text in pair], len(pairs), "pairs", body.text_name)
        logits = (await logits_for(with_swapped(pairs) if body.symmetric else pairs)).logits
        if body.symmetric:
            logits = average_orders(logits)
        scores = activate(logits, body.raw_scores)
        if model.num_labels > 1 and not body.raw_scores:
            scores = torch.softmax(scores, dim=1)
        require_finite(logits, scores, "pairs", body.pair_name)
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
    @app.head("/health", include_in_schema=False)  # load balancers that probe with HEAD
    @app.get("/health", tags=["ops"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.head("/ready", include_in_schema=False)
    @app.get("/ready", tags=["ops"], summary="Readiness: the model is loaded and work is accepted",
             responses={503: {"model": ErrorResponse, "description": "Not started or shutting down."}})
    async def ready() -> Any:
        if not batcher.accepting:
            raise ApiError(503, "not ready: the model worker is not running", "unavailable", retry)
        return {"status": "ready"}

    @app.get("/info", response_model=InfoResponse, tags=["ops"], dependencies=protected, summary="Model and limits")
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

    @app.get("/metrics", tags=["ops"], dependencies=protected, summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        metrics.queue_depth.set(batcher.queue_depth)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ errors
    def error(request: Request, status: int, message: str, error_type: str,
              headers: dict[str, str] | None = None) -> JSONResponse:
        mark_error(request.scope, error_type)
        return JSONResponse(error_body(message, error_type), status_code=status, headers=headers)

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
        if request.headers.get("content-type") and not _is_json(request.headers["content-type"]):
            # FastAPI does not parse such a body, so the model errors would point the wrong way.
            return error(request, 415, f"send the body as JSON with `Content-Type: application/json` (got "
                                       f"{request.headers['content-type']!r})", "unsupported_media_type")
        messages = [_format_problem(p) for p in problems[:5]]
        if len(problems) > 5:
            messages.append(f"... and {len(problems) - 5} more")
        return error(request, 422, "; ".join(messages), "validation")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body" and exc.__cause__:
            # FastAPI's answer to a body json.loads cannot take beyond a syntax error (not UTF-8, nested deeper
            # than Python's recursion limit): its own message does not say what is wrong.
            return error(request, 400, f"malformed JSON body: {exc.__cause__}", "malformed_json")
        path = route_path(request.scope)
        if exc.status_code == 404 and path.endswith("/") and endpoint_label(path.rstrip("/")) != "other":
            # No redirect (see above), so say what the client most likely meant.
            return error(request, 404, f"no endpoint at {request.url.path}; did you mean "
                                       f"{request.url.path.rstrip('/')} (without the trailing slash)?", "not_found")
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return error(request, exc.status_code, str(exc.detail), kinds.get(exc.status_code, "http"),
                     getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Only a failure in a middleware gets here (UnexpectedErrorMiddleware answers the app's own): Starlette
        # re-raises after this answer, and the server logs the traceback.
        return error(request, 500, "internal server error", "internal")

    # Outermost last: metrics see everything; CORS answers preflights and adds its headers to every answer,
    # overload refusals included (so a browser can read their Retry-After); overload is refused before any other
    # work; auth runs before the body is read. Any request header is allowed (SDKs add their own, e.g. Cohere's
    # X-Client-Name): the origin list and the API key are what guard the server. Unexpected errors are answered
    # innermost, so the middlewares above handle that 500 like any other answer (CORS headers, metrics).
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout=settings.request_timeout)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(ConcurrencyLimitMiddleware, max_requests=settings.max_connections,
                       retry_after=settings.retry_after)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _is_json(content_type: str) -> bool:
    """Whether FastAPI parses a body of this type as JSON (``application/json`` or ``application/*+json``)."""
    main, _, sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


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
