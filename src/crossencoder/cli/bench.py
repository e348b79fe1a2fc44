"""``crossencoder bench``: pairs/s and ranking latency of a model on each available backend."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

from crossencoder.cli.common import DEFAULT_MODEL, InputError, check_positive, require_one_label, to_json
from crossencoder.errors import MissingExtraError, install_hint, require_extra

# name -> (backend, backend_kwargs)
BENCH_BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "torch": ("torch", {}),
    "onnx": ("onnx", {}),
    "onnx-int8": ("onnx", {"quantize": "int8"}),
}
DEFAULT_QUERY = "How do cross-encoders re-rank passages for a search query?"
# Varied English sentences; synthetic passages cycle through them until they reach the requested length.
SENTENCES = [
    "Cross-encoders read the query and the passage together and output one relevance score.",
    "Berlin has about 3.7 million inhabitants and is the largest city of Germany.",
    "The river flooded the valley after three days of heavy rain in early spring.",
    "A transformer layer mixes information between tokens with self-attention.",
    "The museum reopened its east wing with a collection of medieval manuscripts.",
    "Quantized models store weights as 8-bit integers, which makes matrix products cheaper.",
    "She trained for the marathon by running forty kilometres a week for six months.",
    "The recipe calls for two cups of flour, a pinch of salt and warm water.",
    "Solar panels convert sunlight into electricity with an efficiency of around twenty percent.",
    "The committee postponed the vote until the budget report was published.",
    "Honeybees communicate the direction of flowers with a waggle dance.",
    "The library lends laptops to students during the examination period.",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand to the CLI."""
    bench = subparsers.add_parser(
        "bench", help="measure pairs/s and ranking latency per backend",
        description="Score the same pairs with each backend (after a warm-up) and print pairs/s, the median and "
                    "95th-percentile latency of ranking --rank-docs passages for one query, and load time "
                    "(the first onnx load includes the export, cached afterwards). Passages are synthetic "
                    "English text of about --doc-tokens tokens unless --file is given.",
        epilog="example:\n  crossencoder bench -m ms-marco-MiniLM-L6-v2 --backends torch,onnx-int8 --threads 2",
    )
    bench.add_argument("--model", "-m", default=DEFAULT_MODEL,
                       help=f"local folder, Hub id or catalog short name; default {DEFAULT_MODEL}")
    bench.add_argument("--backends", default=None,
                       help=f"comma-separated, from {', '.join(BENCH_BACKENDS)} (default: all that are installed)")
    bench.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    bench.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (default: their own)")
    bench.add_argument("--batch-size", type=int, default=32, help="maximum pairs per batch (default 32)")
    bench.add_argument("--max-batch-tokens", type=int, help="maximum padded tokens per batch")
    bench.add_argument("--max-length", type=int, help="maximum tokens per pair (default: the model's)")
    bench.add_argument("--pairs", type=int, default=256, help="pairs scored per throughput run (default 256)")
    bench.add_argument("--doc-tokens", type=int, default=128, help="approximate synthetic passage length (default 128)")
    bench.add_argument("--rank-docs", type=int, default=100, help="passages per ranking-latency call (default 100)")
    bench.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported (default 3)")
    bench.add_argument("--query", "-q", default=DEFAULT_QUERY, help="query of every pair")
    bench.add_argument("--file", help="passages to use instead of synthetic ones (one per line or JSONL 'text')")
    bench.add_argument("--revision", help="Hub branch, tag or commit")
    bench.add_argument("--trust-remote-code", action="store_true", help="allow code from the model folder")
    bench.add_argument("--json", action="store_true", help="print one JSON object per backend instead of a table")
    bench.set_defaults(func=run_bench)


def synthetic_passages(count: int, doc_tokens: int) -> list[str]:
    """``count`` passages of roughly ``doc_tokens`` word-piece tokens, each a different rotation of SENTENCES."""
    # ~1.3 word pieces per English word; 14 words per sentence on average.
    sentences_per_passage = max(1, round(doc_tokens / (14 * 1.3)))
    return [
        " ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(sentences_per_passage)) for i in range(count)
    ]


def available_backends() -> list[str]:
    """Bench backends whose dependencies are installed."""
    try:
        require_extra("onnx", "onnxruntime")
    except MissingExtraError:
        return ["torch"]
    return list(BENCH_BACKENDS)


def _parse_backends(value: str | None) -> list[str]:
    if value is None:
        backends = available_backends()
        if backends == ["torch"]:
            print(f"note: only the torch backend is timed; {install_hint('onnx')} adds the onnx ones.",
                  file=sys.stderr)
        return backends
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCH_BACKENDS]
    if unknown or not names:
        raise InputError(
            f"--backends: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(BENCH_BACKENDS)}."
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        # A second run of the same backend is a warm rerun, and the ratio column would read as a speed-up.
        raise InputError(f"--backends lists {', '.join(repeated)} more than once.")
    if any(BENCH_BACKENDS[name][0] == "onnx" for name in names):
        require_extra("onnx", "onnxruntime", feature="--backends " + ",".join(names))  # before timing torch
    return names


def bench_backend(name: str, args: argparse.Namespace, passages: list[str]) -> dict[str, Any]:
    """Load the model on one backend and time it; returns the row of the table."""
    import torch

    from crossencoder import CrossEncoder

    backend, backend_kwargs = BENCH_BACKENDS[name]
    backend_kwargs = dict(backend_kwargs)
    if backend == "onnx" and args.threads:
        backend_kwargs["num_threads"] = args.threads
    start = time.perf_counter()
    model = CrossEncoder(
        args.model, max_length=args.max_length, device=args.device, backend=backend,
        backend_kwargs=backend_kwargs or None, max_batch_tokens=args.max_batch_tokens, revision=args.revision,
        trust_remote_code=args.trust_remote_code,
    )
    load_s = time.perf_counter() - start
    require_one_label(model, args.model, "bench (it ranks passages)")
    pairs = [(args.query, passages[i % len(passages)]) for i in range(args.pairs)]
    options = {"batch_size": args.batch_size, "show_progress_bar": False}
    model.predict(pairs[: min(len(pairs), 2 * args.batch_size)], **options)  # warm-up
    throughput = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        model.predict(pairs, **options)
        throughput.append(time.perf_counter() - start)
    docs = passages[: args.rank_docs]
    latencies = []
    for _ in range(max(args.repeats, 5)):
        start = time.perf_counter()
        model.rank(args.query, docs, **options)
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    return {
        "backend": name,
        "device": str(model.device),
        "threads": args.threads or torch.get_num_threads(),
        "load_s": round(load_s, 3),
        "pairs_per_s": round(args.pairs / statistics.median(throughput), 2),
        "rank_docs": len(docs),
        "rank_p50_ms": round(1000 * statistics.median(latencies), 2),
        "rank_p95_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2),
    }


def run_bench(args: argparse.Namespace) -> int:
    """Bench each requested backend in turn and print a table (or JSON lines); returns the exit code.

    Raises:
        InputError: a bad option, an unreadable ``--file`` or a model with more than one label.
    """
    check_positive(args, "pairs", "doc_tokens", "rank_docs", "repeats", "batch_size", "threads", "max_batch_tokens")
    names = _parse_backends(args.backends)
    if args.file:
        from crossencoder.cli.predict import read_passages

        passages = read_passages(args.file)
        if not passages:
            raise InputError(f"{args.file}: no passages found.")
    else:
        passages = synthetic_passages(max(args.rank_docs, min(args.pairs, 1000)), args.doc_tokens)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = []
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        rows.append(bench_backend(name, args, passages))
    if args.json:
        for row in rows:
            print(to_json(row))
        return 0
    first = rows[0]["pairs_per_s"]
    header = (
        "backend", "load s", "pairs/s", f"x {rows[0]['backend']}", f"rank {rows[0]['rank_docs']} p50 ms", "p95 ms"
    )
    table = [header] + [
        (r["backend"], f"{r['load_s']:.2f}", f"{r['pairs_per_s']:.1f}", f"{r['pairs_per_s'] / first:.2f}",
         f"{r['rank_p50_ms']:.1f}", f"{r['rank_p95_ms']:.1f}")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    devices = {r["device"] for r in rows}
    # The onnx backend runs on the CPU unless onnxruntime has the GPU's provider: say so rather than one device.
    where = f"device {rows[0]['device']}" if len(devices) == 1 else \
        "devices " + ", ".join(f"{r['backend']} {r['device']}" for r in rows)
    print(f"model {args.model}, {args.pairs} pairs per run, {where}, threads {rows[0]['threads']}, "
          f"median of {args.repeats}")
    return 0
