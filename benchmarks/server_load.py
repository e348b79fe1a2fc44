"""Load benchmark of the rerank server: requests/s, pairs/s and p50/p95/p99 latency at 1, 8 and 32 clients.

Six targets (``--targets`` picks), one at a time (never two under load at once) in one run, on the same model
folder (all-MiniLM-L6-v2 weights + seeded 1-label head, saved as a cross-encoder) and the same requests:

* ``crossencoder-server`` / ``-onnx`` / ``-onnx-int8``: ``crossencoder serve`` (``--backend torch``, ``onnx``
  fp32 with the same scores, or ``onnx --quantize int8``) in its own process, ``POST /v2/rerank`` (Cohere schema);
* ``in-process`` / ``in-process-onnx``: ``CrossEncoder.rank`` called from N threads of this process (what a
  service without a server would do; 1 thread = the library's own speed);
* ``infinity-emb``: infinity-emb 0.0.78 (torch engine) from its own venv, ``POST /rerank``, same JSON body
  (``{"model", "query", "documents"}``).

Every target's top 10 for the first request of each level is checked against in-process ``rank()``.

Requests are real re-ranking work: one of the 40 TREC DL queries of /work/shared/data/msmarco-sample with 20-100
MS MARCO passages (its judged passages first, then random ones), seeded. Each client sends its next request as soon
as the previous one is answered; a few warm-up requests are not counted. All traffic stays on 127.0.0.1.

Usage:
    flock /tmp/crossencoder-bench.lock .venv/bin/python benchmarks/server_load.py \\
        --infinity /work/bench-venvs/infinity/bin/infinity_emb
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "msmarco-sample"
MODEL_NAME = "minilm-l6-ce"
# name -> (kind, backend or engine, quantization); all run on the same model folder.
TARGETS = {
    "crossencoder-server": ("server", "torch", None),
    "crossencoder-server-onnx": ("server", "onnx", None),
    "crossencoder-server-onnx-int8": ("server", "onnx", "int8"),
    "in-process": ("in-process", "torch", None),
    "in-process-onnx": ("in-process", "onnx", None),
    "infinity-emb": ("infinity", "torch", None),
}


# ---------------------------------------------------------------------------------------------- workload
def build_requests(n: int, min_docs: int, max_docs: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """``n`` (query, passages) requests from the MS MARCO sample: judged passages first, then random fill."""
    rng = random.Random(seed)
    corpus: dict[str, str] = {}
    with open(DATA / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            corpus[doc["_id"]] = (doc.get("title", "") + " " + doc["text"]).strip()
    with open(DATA / "queries.jsonl", encoding="utf-8") as f:
        queries = {q["_id"]: q["text"] for q in map(json.loads, f)}
    judged: dict[str, list[str]] = {q: [] for q in queries}
    with open(DATA / "qrels" / "dev.tsv", encoding="utf-8") as f:
        for line in f:
            qid, did, *_ = line.split("\t")
            if qid in judged and did in corpus:
                judged[qid].append(did)
    ids, qids = list(corpus), sorted(queries)
    requests = []
    for i in range(n):
        qid = qids[i % len(qids)]
        k = rng.randint(min_docs, max_docs)
        docs = rng.sample(judged[qid], min(k, len(judged[qid])))
        docs += rng.sample(ids, k - len(docs))
        requests.append((queries[qid], [corpus[d] for d in docs]))
    return requests


# ---------------------------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server in its own process group on a loopback port; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], probe: str, env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.probe = name, argv, probe
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
                    "INFINITY_ANONYMOUS_USAGE_STATS": "0", **(env or {})}
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; log: {self.log.name}")
            try:
                if httpx.get(self.probe, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in time; log: {self.log.name}")
            time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# ---------------------------------------------------------------------------------------------- load
def summarize(latencies: list[float], wall: float, n_pairs: int, errors: int = 0) -> dict[str, float]:
    """Throughput and latency percentiles of one level (``n_pairs``: pairs of the answered requests)."""
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {
        "requests": len(latencies), "errors": errors, "pairs": n_pairs, "wall_s": wall,
        "requests_per_s": len(latencies) / wall, "pairs_per_s": n_pairs / wall,
        "p50_s": statistics.median(ordered), "p95_s": pct(95), "p99_s": pct(99),
    }


async def http_load(url: str, model: str, requests: list[tuple[str, list[str]]], clients: int) -> dict:
    """``clients`` concurrent clients sending ``requests`` (each client takes the next unsent one)."""
    latencies: list[float] = []
    cursor = iter(range(len(requests)))
    first_top10: list[int] = []
    answered_pairs = 0
    errors: list[str] = []

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal answered_pairs
        for i in cursor:
            query, docs = requests[i]
            started = time.perf_counter()
            response = await http.post(url, json={"model": model, "query": query, "documents": docs})
            if response.status_code != 200:  # counted and reported, never timed as a success
                errors.append(f"{response.status_code}: {response.text[:200]}")
                continue
            latencies.append(time.perf_counter() - started)
            answered_pairs += len(docs)
            if i == 0:
                first_top10.extend(r["index"] for r in response.json()["results"][:10])

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=600) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    if errors:
        print(f"  {url}: {len(errors)} failed requests, first: {errors[0]}", flush=True)
    return {**summarize(latencies, wall, answered_pairs, len(errors)), "first_top10": first_top10}


def http_runner(url: str) -> Callable[[list[tuple[str, list[str]]], int], dict]:
    """A load function for the rerank endpoint at ``url`` (same signature as :func:`thread_load` minus ``rank``)."""
    return lambda requests, clients: asyncio.run(http_load(url, MODEL_NAME, requests, clients))


def thread_load(rank: Callable, requests: list[tuple[str, list[str]]], clients: int) -> dict:
    """``clients`` threads calling ``rank(query, docs)`` in process."""
    latencies: list[float] = []
    first_top10: list[int] = []

    def one(i: int) -> None:
        started = time.perf_counter()
        hits = rank(*requests[i])
        latencies.append(time.perf_counter() - started)
        if i == 0:
            first_top10.extend(h["corpus_id"] for h in hits[:10])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(len(requests))))
    wall = time.perf_counter() - started
    return {**summarize(latencies, wall, sum(len(d) for _, d in requests)), "first_top10": first_top10}


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--min-requests", type=int, default=16, help="requests per level, at least")
    parser.add_argument("--per-client", type=int, default=1, help="requests per client, at least")
    parser.add_argument("--min-docs", type=int, default=20)
    parser.add_argument("--max-docs", type=int, default=100)
    parser.add_argument("--infinity", help="path of infinity-emb's `infinity_emb` command (its own venv)")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), help="subset of: " + ", ".join(TARGETS))
    default_out = Path(tempfile.gettempdir()) / "crossencoder-bench" / "server_load.json"
    parser.add_argument("--out", type=Path, default=default_out,
                        help="where the JSON results go (default: /tmp/crossencoder-bench/server_load.json)")
    args = parser.parse_args()
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if "infinity-emb" in args.targets and not args.infinity:
        parser.error("the infinity-emb target needs --infinity PATH (or leave it out of --targets)")

    from crossencoder import CrossEncoder
    from crossencoder.testing import make_minilm_cross_encoder

    workdir = Path(tempfile.mkdtemp(prefix="server-load-"))
    model_dir = workdir / MODEL_NAME
    make_minilm_cross_encoder(model_dir)
    CrossEncoder(model_dir).save(model_dir)  # write the cross-encoder settings (activation) too

    levels = {c: build_requests(max(args.min_requests, c * args.per_client), args.min_docs, args.max_docs, seed=c)
              for c in args.clients}
    warmup = build_requests(4, args.min_docs, args.max_docs, seed=999)
    results: dict[str, dict] = {t: {} for t in args.targets}
    # Correctness guard: every target must rank each level's first request exactly like in-process rank().
    reference = CrossEncoder(model_dir)
    expected_top = {c: [h["corpus_id"] for h in reference.rank(*requests[0], top_k=10)]
                    for c, requests in levels.items()}
    del reference

    # Start every target first (idle servers cost memory, not CPU), then run each level on one target after the
    # other: on a shared machine, slow drifts in background load then hit all targets alike.
    runners: dict[str, Callable[[list[tuple[str, list[str]]], int], dict]] = {}
    with ExitStack() as stack:
        for target in args.targets:
            kind, backend, quantize = TARGETS[target]
            port = free_port()
            if kind == "server":
                argv = [sys.executable, "-m", "crossencoder.cli.main", "serve", "-m", str(model_dir), "--port",
                        str(port), "--backend", backend, "--served-model-name", MODEL_NAME, "--log-level", "warning",
                        "--request-timeout", "600"]  # measure queueing under load, not the default 60 s cut-off
                argv += ["--quantize", quantize] if quantize else []
                stack.enter_context(ServerProcess(target, argv, f"http://127.0.0.1:{port}/ready"))
                runners[target] = http_runner(f"http://127.0.0.1:{port}/v2/rerank")
            elif kind == "infinity":
                argv = [args.infinity, "v2", "--model-id", str(model_dir), "--served-model-name", MODEL_NAME,
                        "--engine", backend, "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
                stack.enter_context(ServerProcess(target, argv, f"http://127.0.0.1:{port}/health"))
                runners[target] = http_runner(f"http://127.0.0.1:{port}/rerank")
            else:
                model = CrossEncoder(model_dir, backend=backend,
                                     backend_kwargs={"quantize": quantize} if quantize else None)
                runners[target] = lambda requests, clients, rank=model.rank: thread_load(rank, requests, clients)
        for run in runners.values():
            run(warmup, 2)

        print(f"{'target':<26}{'clients':>8}{'req/s':>9}{'pairs/s':>10}{'p50 s':>9}{'p95 s':>9}{'p99 s':>9}"
              "  same top-10")
        for clients, requests in levels.items():
            for target, run in runners.items():
                row = run(requests, clients)
                row["top10_matches_rank"] = row.pop("first_top10") == expected_top[clients]
                results[target][str(clients)] = row
                report(target, clients, row)

    if results.get("infinity-emb"):
        theirs = results["infinity-emb"]
        for target in (t for t, (kind, *_) in TARGETS.items() if kind == "server" and t in results):
            ours = results[target]
            print(f"\n{target} vs infinity-emb:")
            for clients in map(str, args.clients):
                ratio = ours[clients]["pairs_per_s"] / theirs[clients]["pairs_per_s"]
                print(f"  {clients:>2} clients: throughput x{ratio:.2f}"
                      f", p50 {ours[clients]['p50_s']:.3f} s vs {theirs[clients]['p50_s']:.3f} s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": date.today().isoformat(), "command": " ".join(sys.argv), "machine": machine(),
        "workload": {"source": "msmarco-sample (TREC DL queries, MS MARCO passages)", "min_docs": args.min_docs,
                     "max_docs": args.max_docs, "requests_per_level": {c: len(r) for c, r in levels.items()}},
        "results": results,
    }
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"\nwrote {args.out}")
    return 0


def report(target: str, clients: int, row: dict) -> None:
    print(f"{target:<26}{clients:>8}{row['requests_per_s']:>9.2f}{row['pairs_per_s']:>10.1f}"
          f"{row['p50_s']:>9.3f}{row['p95_s']:>9.3f}{row['p99_s']:>9.3f}  {row['top10_matches_rank']}", flush=True)


def machine() -> dict:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    sys.exit(main())
