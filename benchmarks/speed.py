"""Speed benchmark: crossencoder torch / onnx / onnx-int8 against sentence-transformers, side by side, on CPU.

All rows run in one invocation on the same model folder (all-MiniLM-L6-v2 weights + seeded 1-label head, the
ms-marco-MiniLM-L6-v2 architecture) and the same pairs:

* long: 6 queries x 50 passages of ~100-250 tokens assembled from real STS-B sentences (throughput, top-10);
* short: 500 STS-B dev sentence pairs (~25 tokens), scored as 20 queries x 25 (throughput, top-10);
* latency: ``rank(query, 100 passages)`` of the long pool, p50 over several calls.

Each row runs in its own process (so peak RSS is per row) with 2 threads; all rows are loaded and warmed up first,
then timed round-robin (one run of each row in turn, rotating the order) so that the noise of a shared machine hits
every row alike; throughput is the median of ``--repeats`` runs. Quantized rows report the Spearman correlation of
their scores with the same library's fp32 torch scores and the fraction of queries with an identical top-10 set.
Achieved GFLOP/s counts the useful (unpadded) multiply-adds of the transformer and is set against the peak of a
2-thread fp32 torch matmul measured in the same run.

The sentence-transformers onnx rows need optimum-onnx, whose only release (0.1.0) pins transformers < 4.58, while
sentence-transformers 6.x needs transformers 5: no environment holds both, so those two rows run in a peer
interpreter (``--peer-python``, else ``$CROSSENCODER_PEER_PYTHON``, else /work/bench-venvs/st-onnx if present) with
the newest sentence-transformers that installs with its onnx extra::

    python3 -m venv /work/bench-venvs/st-onnx
    /work/bench-venvs/st-onnx/bin/pip install -c constraints/cpu.txt "sentence-transformers[onnx]<6.2" torch==2.13.0

Its int8 row uses sentence-transformers' dynamic-int8 preset for this CPU (avx512_vnni / avx512 / avx2 / arm64), as
ours picks its settings for the CPU. The st-torch row runs in this project's venv (sentence-transformers 6.2).

Usage:
    flock /tmp/crossencoder-bench.lock .venv/bin/python benchmarks/speed.py --out /tmp/crossencoder-bench/speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "stsb"
RESULTS = Path(tempfile.gettempdir()) / "crossencoder-bench"
# Interpreter for the sentence-transformers onnx rows (see the module docstring): --peer-python, else this
# environment variable, else the conventional peer venv if it exists, else this interpreter.
PEER_PYTHON_ENV = "CROSSENCODER_PEER_PYTHON"
DEFAULT_PEER_PYTHON = Path("/work/bench-venvs/st-onnx/bin/python")
THREADS = 2
ROWS = {
    # name: (library, backend, quantized)
    "st-torch": ("st", "torch", False),
    "st-onnx": ("st", "onnx", False),
    "st-onnx-int8": ("st", "onnx", True),
    "ours-torch": ("ours", "torch", False),
    "ours-onnx": ("ours", "onnx", False),
    "ours-onnx-int8": ("ours", "onnx", True),
}


# ---------------------------------------------------------------------------------------------- workloads
def read_stsb(name: str) -> list[tuple[str, str]]:
    pairs = []
    with open(DATA / name, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) >= 7:
                pairs.append((fields[5], fields[6]))
    return pairs


def build_workloads(tokenizer, seed: int = 0) -> dict:
    """Queries and passages from STS-B: long passages of 100-250 tokens, short dev pairs."""
    rng = random.Random(seed)
    train = read_stsb("sts-train.csv")
    sentences = [s for pair in train for s in pair]
    rng.shuffle(sentences)
    passages, position = [], 0
    for _ in range(300):
        target, words = rng.randint(100, 250), []
        while True:
            sentence = sentences[position % len(sentences)]
            position += 1
            words.append(sentence)
            if len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) >= target - 12:
                break
        passages.append(" ".join(words))
    queries = [train[i][0] for i in rng.sample(range(len(train)), 6)]
    long_pairs = [(queries[i // 50], passages[i]) for i in range(300)]
    dev = read_stsb("sts-dev.csv")
    short_pairs = [(dev[q * 25][0], dev[q * 25 + j][1]) for q in range(20) for j in range(25)]
    return {
        "long": long_pairs, "long_group": 50, "short": short_pairs, "short_group": 25,
        "latency_query": queries[0], "latency_docs": passages[:100],
    }


def transformer_flops(lengths: list[int], layers: int, hidden: int, intermediate: int) -> float:
    """Multiply-adds x2 of the encoder on unpadded sequences: projections + FFN + attention scores/values."""
    per_layer = [2 * n * (4 * hidden * hidden + 2 * hidden * intermediate) + 4 * n * n * hidden for n in lengths]
    return float(layers * sum(per_layer))


# ---------------------------------------------------------------------------------------------- worker
def load_row(row: str, model_dir: str):
    library, backend, quantized = ROWS[row]
    if library == "ours":
        from crossencoder import CrossEncoder

        kwargs = {"num_threads": THREADS, **({"quantize": "int8"} if quantized else {})} if backend == "onnx" else None
        model = CrossEncoder(model_dir, device="cpu", backend=backend, backend_kwargs=kwargs)
        return model, lambda pairs: model.predict(pairs, batch_size=32, show_progress_bar=False), \
            lambda q, docs: model.rank(q, docs, batch_size=32, show_progress_bar=False)
    from sentence_transformers import CrossEncoder as STCrossEncoder

    if backend == "torch":
        model = STCrossEncoder(model_dir, device="cpu")
    else:
        file_name = None
        if quantized:
            from sentence_transformers import export_dynamic_quantized_onnx_model

            base = STCrossEncoder(model_dir, device="cpu", backend="onnx")
            config = json.loads((Path(model_dir).parent / "workloads.json").read_text())["st_int8_config"]
            export_dynamic_quantized_onnx_model(base, config, model_dir, file_suffix=f"int8_{config}")
            file_name = f"onnx/model_int8_{config}.onnx"
        model_kwargs = {"provider": "CPUExecutionProvider"}
        if file_name:
            model_kwargs["file_name"] = file_name
        model = STCrossEncoder(model_dir, device="cpu", backend="onnx", model_kwargs=model_kwargs)
    return model, lambda pairs: model.predict(pairs, batch_size=32, show_progress_bar=False), \
        lambda q, docs: model.rank(q, docs, batch_size=32, show_progress_bar=False)


def st_int8_config() -> str:
    """sentence-transformers' dynamic-int8 preset for this CPU, so its int8 row gets the same advantage as ours.

    Computed by the driver (the peer interpreter may lack crossencoder's dependencies) and passed in workloads.json.
    """
    from crossencoder.backends.onnx_export import cpu_int8_profile

    return {"vnni": "avx512_vnni", "avx512": "avx512", "arm64": "arm64"}.get(cpu_int8_profile()["isa"], "avx2")


def worker(row: str, work: Path) -> None:
    """Load one row's model, warm it up, then serve timing commands from stdin (one JSON line per answer).

    Commands: ``long`` / ``short`` (score that workload once: seconds and scores), ``latency`` (one
    ``rank(query, 100 passages)``: seconds), ``quit`` (peak RSS, then exit).
    """
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    workloads = json.loads((work / "workloads.json").read_text())
    start = time.perf_counter()
    _, predict, rank = load_row(row, str(work / "model"))
    load_s = time.perf_counter() - start
    pairs = {name: [tuple(p) for p in workloads[name]] for name in ("long", "short")}
    predict(pairs["long"][:64])  # warm-up: allocators, thread pools, kernel selection
    predict(pairs["short"][:64])
    answer = {"ready": True, "load_s": load_s, "version": _library_version(row, workloads)}
    while True:
        print(json.dumps(answer), flush=True)
        command = sys.stdin.readline().strip()
        if command in ("long", "short"):
            start = time.perf_counter()
            scores = predict(pairs[command])
            answer = {"s": time.perf_counter() - start, "scores": np.asarray(scores, dtype=np.float64).ravel().tolist()}
        elif command == "latency":
            start = time.perf_counter()
            rank(workloads["latency_query"], workloads["latency_docs"])
            answer = {"s": time.perf_counter() - start}
        else:
            print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
            return


class Worker:
    """One row's worker process and its line protocol."""

    def __init__(self, row: str, python: str, work: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": str(ROOT / "src")}
        self.row = row
        self.process = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", row, "--work", str(work)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(work / f"{row}.log", "w"), text=True, env=env,
        )
        self.log = work / f"{row}.log"
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(" / ".join(tail) or f"worker exited with {self.process.returncode}")
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()


def _library_version(row: str, workloads: dict) -> str:
    if ROWS[row][0] == "ours":
        import crossencoder

        return f"crossencoder {crossencoder.__version__}"
    import sentence_transformers
    import transformers

    version = f"sentence-transformers {sentence_transformers.__version__} (transformers {transformers.__version__})"
    return version + (", int8 preset " + workloads["st_int8_config"] if ROWS[row][2] else "")


# ---------------------------------------------------------------------------------------------- driver
def matmul_peak_gflops(seconds: float = 3.0) -> float:
    """fp32 GEMM throughput of torch on THREADS threads (n=1024 square matrices), best of a few runs."""
    import torch

    torch.set_num_threads(THREADS)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * 1024**3 / (time.perf_counter() - start) / 1e9)
    return best


def top10_identical(reference: list[float], scores: list[float], group: int) -> list[bool]:
    import numpy as np

    out = []
    for start in range(0, len(reference), group):
        ref, got = np.asarray(reference[start:start + group]), np.asarray(scores[start:start + group])
        out.append(set(np.argsort(-ref, kind="stable")[:10]) == set(np.argsort(-got, kind="stable")[:10]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
    parser.add_argument("--peer-python", default=os.environ.get(PEER_PYTHON_ENV) or
                        (str(DEFAULT_PEER_PYTHON) if DEFAULT_PEER_PYTHON.exists() else None),
                        help=f"interpreter with sentence-transformers + optimum-onnx for the st-onnx rows (default: "
                             f"${PEER_PYTHON_ENV}, else {DEFAULT_PEER_PYTHON} if it exists, else this one)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per workload (median reported)")
    parser.add_argument("--latency-repeats", type=int, default=5, help="rank(query, 100 passages) calls")
    parser.add_argument("--out", default=str(RESULTS / "speed.json"), help="results JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny workloads, to check the script end to end")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, Path(args.work))
        return 0

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoConfig, AutoTokenizer

    from crossencoder.testing import make_minilm_cross_encoder

    with tempfile.TemporaryDirectory(prefix="ce-speed-") as tmp:
        work = Path(tmp)
        make_minilm_cross_encoder(work / "model", num_labels=1, seed=0)
        tokenizer = AutoTokenizer.from_pretrained(work / "model")
        config = AutoConfig.from_pretrained(work / "model")
        workloads = build_workloads(tokenizer)
        if args.smoke:
            workloads.update(long=workloads["long"][:50], short=workloads["short"][:25],
                             latency_docs=workloads["latency_docs"][:10])
        workloads["st_int8_config"] = st_int8_config()
        (work / "workloads.json").write_text(json.dumps(workloads))
        lengths = {
            name: [len(ids) for ids in tokenizer([a for a, _ in workloads[name]], [b for _, b in workloads[name]],
                                                 truncation=True, max_length=512)["input_ids"]]
            for name in ("long", "short")
        }
        flops = {name: transformer_flops(lengths[name], config.num_hidden_layers, config.hidden_size,
                                         config.intermediate_size) for name in lengths}
        peak = matmul_peak_gflops()
        results = run_interleaved(rows, work, args)
        peak = max(peak, matmul_peak_gflops())
    report = summarise(results, lengths, flops, peak)
    report["cpu_isa"] = workloads["st_int8_config"]
    print(format_table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_out, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def run_interleaved(rows: list[str], work: Path, args: argparse.Namespace) -> dict:
    """Load every row in its own process, then time them round-robin so machine noise hits all rows alike."""
    workers, results = {}, {}
    for row in rows:
        library, backend, _ = ROWS[row]
        python = args.peer_python if library == "st" and backend == "onnx" and args.peer_python else sys.executable
        print(f"loading {row} ({python}) ...", file=sys.stderr, flush=True)
        try:
            workers[row] = Worker(row, python, work)
            results[row] = {"load_s": workers[row].ready["load_s"], "library_version": workers[row].ready["version"],
                            "long_times": [], "short_times": [], "latency_ms": []}
        except RuntimeError as exc:
            print(f"  {row} failed: {exc}", file=sys.stderr)
            results[row] = {"error": str(exc)}
    schedule = [("long", args.repeats), ("short", args.repeats), ("latency", args.latency_repeats)]
    for command, repeats in schedule:
        for repeat in range(repeats):
            print(f"{command} round {repeat + 1}/{repeats}", file=sys.stderr, flush=True)
            order = list(workers)[repeat % max(1, len(workers)):] + list(workers)[:repeat % max(1, len(workers))]
            for row in order:
                answer = workers[row].ask(command)
                if command == "latency":
                    results[row]["latency_ms"].append(1000 * answer["s"])
                else:
                    results[row][f"{command}_times"].append(answer["s"])
                    results[row].setdefault(f"{command}_scores", answer["scores"])
    for row, worker_ in workers.items():
        results[row]["peak_rss_mb"] = worker_.ask("quit")["peak_rss_mb"]
        worker_.process.wait()
        r = results[row]
        r.update(long_s=statistics.median(r["long_times"]), short_s=statistics.median(r["short_times"]),
                 latency_p50_ms=statistics.median(r["latency_ms"]))
    return results


def summarise(results: dict, lengths: dict, flops: dict, peak: float) -> dict:
    from scipy.stats import spearmanr

    base = results.get("st-torch", {}).get("long_s")
    rows = []
    for row, r in results.items():
        if "error" in r:
            rows.append({"row": row, "error": r["error"]})
            continue
        entry = {
            "row": row, "version": r["library_version"],
            "long_pairs_s": len(lengths["long"]) / r["long_s"], "short_pairs_s": len(lengths["short"]) / r["short_s"],
            "ratio_vs_st_torch": (base / r["long_s"]) if base else None,
            "latency_p50_ms": r["latency_p50_ms"], "peak_rss_mb": r["peak_rss_mb"], "load_s": r["load_s"],
            "long_gflops": flops["long"] / r["long_s"] / 1e9, "short_gflops": flops["short"] / r["short_s"] / 1e9,
            "raw": {k: r[k] for k in ("long_times", "short_times", "latency_ms")},
        }
        library, _, quantized = ROWS[row]
        reference = results.get(f"{library}-torch")
        if quantized and reference and "error" not in reference:
            rho_long = spearmanr(reference["long_scores"], r["long_scores"])[0]
            rho_short = spearmanr(reference["short_scores"], r["short_scores"])[0]
            same = top10_identical(reference["long_scores"], r["long_scores"], 50) + \
                top10_identical(reference["short_scores"], r["short_scores"], 25)
            entry.update(spearman_long=float(rho_long), spearman_short=float(rho_short),
                         top10_identical=sum(same) / len(same))
        rows.append(entry)
    st_int8 = next((e for e in rows if e["row"] == "st-onnx-int8" and "error" not in e), None)
    ours = [e for e in rows if e["row"].startswith("ours") and "error" not in e]
    best = max(ours, key=lambda e: e["long_pairs_s"]) if ours else None
    return {
        "date": time.strftime("%Y-%m-%d"), "threads": THREADS, "matmul_peak_gflops": peak,
        "long_pairs": len(lengths["long"]), "short_pairs": len(lengths["short"]),
        "long_mean_tokens": sum(lengths["long"]) / len(lengths["long"]),
        "short_mean_tokens": sum(lengths["short"]) / len(lengths["short"]),
        "rows": rows,
        "best_ours": best["row"] if best else None,
        "best_vs_st_torch": best["ratio_vs_st_torch"] if best else None,
        "best_vs_st_onnx_int8": (best["long_pairs_s"] / st_int8["long_pairs_s"]) if best and st_int8 else None,
    }


def format_table(report: dict) -> str:
    lines = [
        f"long: {report['long_pairs']} pairs, mean {report['long_mean_tokens']:.0f} tokens; short: "
        f"{report['short_pairs']} pairs, mean "
        f"{report['short_mean_tokens']:.0f} tokens; {report['threads']} threads; fp32 matmul peak "
        f"{report['matmul_peak_gflops']:.0f} GFLOP/s; int8 preset {report['cpu_isa']}",
        "| row | long pairs/s | x st-torch | short pairs/s | p50 rank-100 ms | peak RSS MB | GFLOP/s long (% peak) "
        "| Spearman vs fp32 (long / short) | identical top-10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in report["rows"]:
        if "error" in e:
            lines.append(f"| {e['row']} | failed: {e['error'].splitlines()[-1][:80]} | | | | | | | |")
            continue
        ratio = f"{e['ratio_vs_st_torch']:.2f}" if e["ratio_vs_st_torch"] else "-"
        rho = f"{e['spearman_long']:.4f} / {e['spearman_short']:.4f}" if "spearman_long" in e else "-"
        top = f"{e['top10_identical']:.2f}" if "top10_identical" in e else "-"
        share = 100 * e["long_gflops"] / report["matmul_peak_gflops"]
        lines.append(
            f"| {e['row']} | {e['long_pairs_s']:.1f} | {ratio} | {e['short_pairs_s']:.0f} | {e['latency_p50_ms']:.0f} "
            f"| {e['peak_rss_mb']:.0f} | {e['long_gflops']:.0f} ({share:.0f}%) | {rho} | {top} |"
        )
    if report["best_ours"]:
        vs_int8 = f"{report['best_vs_st_onnx_int8']:.2f}x" if report["best_vs_st_onnx_int8"] else "n/a"
        vs_torch = f"{report['best_vs_st_torch']:.2f}x" if report["best_vs_st_torch"] else "n/a"
        lines.append(f"best of ours: {report['best_ours']}, {vs_torch} st-torch, {vs_int8} st-onnx-int8 (long pairs/s)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
