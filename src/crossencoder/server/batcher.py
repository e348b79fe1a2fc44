"""Dynamic micro-batching: merge the pairs of concurrent requests into few model calls on one worker thread."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import torch

from crossencoder.server.metrics import Metrics

if TYPE_CHECKING:
    from crossencoder.model.cross_encoder import CrossEncoder

logger = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The bounded request queue is full; the client should retry later (HTTP 429)."""


class ShuttingDownError(Exception):
    """The batcher is not accepting work (not started yet, or draining for shutdown; HTTP 503)."""


class Scored(NamedTuple):
    """What one request gets back: raw logits ``[n, num_labels]`` and the tokens its pairs fed the model."""

    logits: torch.Tensor
    tokens: int


@dataclass
class _Job:
    pairs: list[tuple[str, str]]
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Score pairs for many concurrent requests with one model, in merged batches.

    Requests are put on a bounded asyncio queue. One worker task takes the first waiting request, then keeps
    taking requests (waiting at most ``max_wait_ms`` for new ones) until the merged call holds ``max_batch_pairs``
    pairs, and scores them with a single ``CrossEncoder.predict`` call, which sorts all pairs by length into
    token-budget batches. The call runs on a dedicated thread so the event loop keeps serving HTTP; while it runs,
    new requests queue up and form the next merged call. Each request gets back its own slice of raw logits and
    its token count (for the ``usage`` of rerank answers). When a merged call fails, each of its requests is
    scored again on its own, so a request the model cannot take fails alone.

    Args:
        model: A loaded :class:`~crossencoder.CrossEncoder`.
        max_queue: Maximum requests waiting; :meth:`submit` raises :class:`QueueFullError` beyond.
        max_batch_pairs: Target pairs per merged model call (one request larger than this runs alone).
        max_wait_ms: How long to wait for more requests once one is waiting (0: merge only what is queued).
        batch_size: Maximum pairs per forward pass.
        max_batch_tokens: Maximum padded tokens per forward pass (None: the model's default).
        metrics: Where batch sizes, model time and queue depth are recorded.

    Example:
        >>> batcher = MicroBatcher(model)
        >>> await batcher.start()
        >>> scored = await batcher.submit([("query", "passage one"), ("query", "passage two")])
        >>> scored.logits.shape, scored.tokens  # (torch.Size([2, 1]), 12)
        >>> await batcher.stop()
    """

    def __init__(
        self,
        model: CrossEncoder,
        max_queue: int = 128,
        max_batch_pairs: int = 256,
        max_wait_ms: float = 2.0,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.model = model
        self.max_batch_pairs = max_batch_pairs
        self.max_wait = max_wait_ms / 1000.0
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.metrics = metrics
        self._max_queue = max_queue
        self._queue: asyncio.Queue[_Job] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._accepting = False

    @property
    def accepting(self) -> bool:
        """True between :meth:`start` and :meth:`stop`: new work is accepted."""
        return self._accepting

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not counting the ones being scored)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        """Start the worker (call from the event loop that will submit work)."""
        self._queue = asyncio.Queue(maxsize=self._max_queue)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crossencoder-model")
        self._task = asyncio.create_task(self._run(), name="crossencoder-batcher")
        self._accepting = True

    async def stop(self) -> None:
        """Stop accepting work, finish every queued request, then stop the worker thread."""
        self._accepting = False
        if self._queue is not None and self._task is not None and not self._task.done():
            await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, pairs: list[tuple[str, str]]) -> Scored:
        """Queue ``pairs`` for scoring and wait for their raw logits and token count.

        Cancelling the caller (e.g. on a timeout) drops the request if the model has not started on it yet.

        Args:
            pairs: ``(text_a, text_b)`` pairs (at least one).

        Returns:
            float32 logits of shape ``[len(pairs), num_labels]``, in the order of ``pairs``, and the number of
            tokens the pairs fed the model (after truncation, special tokens included).

        Raises:
            QueueFullError: the queue is full.
            ShuttingDownError: the batcher is not running.
        """
        if self._queue is None:
            raise ShuttingDownError("the model worker has not started: the app's lifespan must run (an app mounted "
                                    "in another one needs the parent to run it; see create_app)")
        if not self._accepting:
            raise ShuttingDownError("the server is shutting down")
        job = _Job(pairs, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFullError(f"the request queue is full ({self._max_queue} requests waiting)") from None
        self._record_depth()
        return await job.future

    def _record_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.queue_depth)

    async def _collect(self) -> list[_Job]:
        """Wait for one request, then gather more until the pair target or the wait deadline is reached."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        jobs = [await self._queue.get()]
        n_pairs = len(jobs[0].pairs)
        deadline = loop.time() + self.max_wait
        while n_pairs < self.max_batch_pairs:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:  # not the builtin on Python 3.10
                    break
            jobs.append(job)
            n_pairs += len(job.pairs)
        self._record_depth()
        return jobs

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            jobs = await self._collect()
            try:
                await self._score_jobs(jobs)
            finally:
                for _ in jobs:
                    self._queue.task_done()

    async def _score_jobs(self, jobs: list[_Job]) -> None:
        """Score the jobs' pairs in one model call and hand each job its slice (or the call's error)."""
        # Requests that timed out or were abandoned while queued cost nothing.
        jobs = [job for job in jobs if not job.future.done()]
        if not jobs:
            return
        pairs = [pair for job in jobs for pair in job.pairs]
        started = time.perf_counter()
        try:
            logits, tokens = await asyncio.get_running_loop().run_in_executor(self._executor, self._score, pairs)
        except Exception as exc:  # noqa: BLE001 - every waiting request must learn about the failure
            if len(jobs) > 1:
                # One request's input (say, text the tokenizer rejects) must not fail the requests merged with it.
                logger.warning("Model call on %d pairs of %d requests failed (%s: %s); scoring them one by one",
                               len(pairs), len(jobs), type(exc).__name__, exc)
                for job in jobs:
                    await self._score_jobs([job])
                return
            logger.exception("Model call on %d pairs failed", len(pairs))
            if not jobs[0].future.done():
                jobs[0].future.set_exception(exc)
            return
        self._record_batch(len(pairs), len(jobs), time.perf_counter() - started)
        offset = 0
        for job in jobs:
            part = slice(offset, offset + len(job.pairs))
            offset += len(job.pairs)
            if not job.future.done():
                job.future.set_result(Scored(logits[part], sum(tokens[part])))

    def _score(self, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, list[int]]:
        """Raw logits ``[n, num_labels]`` and per-pair token counts (runs on the worker thread)."""
        return self.model.logits_with_token_counts(
            pairs, batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens, show_progress_bar=False,
        )

    def _record_batch(self, n_pairs: int, n_requests: int, seconds: float) -> None:
        if self.metrics is None:
            return
        self.metrics.batch_pairs.observe(n_pairs)
        self.metrics.batch_requests.observe(n_requests)
        self.metrics.model_seconds.observe(seconds)
        self.metrics.pairs.inc(n_pairs)
