"""Ray scale-out benchmark: pairs/s of ``score_dataset`` with 1 and 2 workers against in-process ``predict()``.

Same model (all-MiniLM-L6-v2 weights + seeded 1-label head, the ms-marco-MiniLM-L6-v2 architecture) and the same
pairs (STS-B train sentence pairs, ~25 tokens each) for every row:

* in-process: ``CrossEncoder.predict`` with 1 and with 2 torch threads (model load not timed);
* ray: ``score_dataset`` on a local Ray with 2 CPUs, 1 and 2 actors of 1 CPU each, Parquet in and out. "end to end"
  times the whole call with Ray already started (actor start, model load in each actor, reading, scoring,
  writing); "steady" divides the rows by the per-actor busy time recorded in the shard markers (start-up excluded).

The in-process rows run before Ray starts, so Ray's idle daemons do not share their cores. Every Ray run writes to
a fresh folder; its scores are checked against the in-process ones.

Usage:
    flock /tmp/crossencoder-bench.lock .venv/bin/python benchmarks/ray_scale.py \\
        --out /tmp/crossencoder-bench/ray_scale.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from crossencoder import CrossEncoder
from crossencoder.testing import make_minilm_cross_encoder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsb"
RESULTS = Path(tempfile.gettempdir()) / "crossencoder-bench"


def read_stsb_pairs(limit: int) -> list[tuple[str, str]]:
    """Sentence pairs of STS-B train (tab-separated, no quoting; text in fields 6 and 7)."""
    pairs = []
    with open(DATA / "sts-train.csv", encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) >= 7:
                pairs.append((fields[5], fields[6]))
    return pairs[:limit]


def time_in_process(model_dir: Path, pairs: list[tuple[str, str]], threads: int, batch_size: int) -> dict:
    torch.set_num_threads(threads)
    model = CrossEncoder(model_dir)
    model.predict(pairs[:64], batch_size=batch_size)  # warm-up
    started = time.perf_counter()
    scores = model.predict(pairs, batch_size=batch_size, show_progress_bar=False)
    seconds = time.perf_counter() - started
    return {"mode": "in-process", "workers": 1, "threads": threads, "seconds": seconds,
            "pairs_per_s": len(pairs) / seconds, "steady_pairs_per_s": len(pairs) / seconds, "scores": scores}


def time_ray(model_dir: Path, table_path: Path, out_dir: Path, workers: int, args: argparse.Namespace) -> dict:
    from crossencoder.distributed import score_dataset

    result = score_dataset(str(model_dir), table_path, out_dir, num_workers=workers, batch_size=args.batch_size,
                           shard_rows=args.shard_rows, show_progress=False)
    busy = sum(json.loads(p.read_text())["seconds"] for p in (out_dir / "_done").glob("*.json"))
    frame = pd.read_parquet(out_dir).sort_values("row")
    return {"mode": "ray", "workers": workers, "threads": 1, "seconds": result.seconds,
            "pairs_per_s": result.rows_written / result.seconds,
            "steady_pairs_per_s": result.rows_written / (busy / workers), "scores": frame["score"].to_numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=5749, help="STS-B train pairs to score (default: all 5749)")
    parser.add_argument("--shard-rows", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=RESULTS / "ray_scale.json", help="JSON results")
    args = parser.parse_args()

    import ray

    work = Path(tempfile.mkdtemp(prefix="ray-scale-"))
    model_dir = make_minilm_cross_encoder(work / "model")
    pairs = read_stsb_pairs(args.pairs)
    table_path = work / "pairs.parquet"
    pq.write_table(pa.table({"id": list(range(len(pairs))), "text_a": [a for a, _ in pairs],
                             "text_b": [b for _, b in pairs]}), table_path)

    rows = [time_in_process(model_dir, pairs, threads, args.batch_size) for threads in (1, 2)]
    reference = rows[0]["scores"]
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    ray_start = time.perf_counter() - started
    for workers in (1, 2):
        rows.append(time_ray(model_dir, table_path, work / f"out-{workers}", workers, args))
    ray.shutdown()

    base = rows[0]["pairs_per_s"]
    print(f"{len(pairs)} STS-B pairs, MiniLM-L6 cross-encoder, batch {args.batch_size}, shards of {args.shard_rows}; "
          f"local Ray start {ray_start:.1f}s (not in the rows)")
    print("| mode | workers x threads | wall s | pairs/s end to end | pairs/s steady | vs in-process 1 thread | "
          "max abs diff |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        diff = float(np.max(np.abs(row["scores"] - reference)))
        row["max_abs_diff"] = diff
        print(f"| {row['mode']} | {row['workers']} x {row['threads']} | {row['seconds']:.1f} | "
              f"{row['pairs_per_s']:.0f} | {row['steady_pairs_per_s']:.0f} | {row['pairs_per_s'] / base:.2f}x | "
              f"{diff:.1e} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "pairs": len(pairs), "batch_size": args.batch_size, "shard_rows": args.shard_rows,
        "ray_start_s": ray_start, "machine": platform.processor() or platform.machine(),
        "rows": [{k: v for k, v in r.items() if k != "scores"} for r in rows],
    }, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
