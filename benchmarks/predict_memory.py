"""Peak memory of ``CrossEncoder.predict`` on a big input: tokenized in chunks (the default) against all at once.

Each setting runs in its own process (peak RSS only grows within a process) on the same pairs, with a tiny 2-layer
model so that the model's own memory and time stay small and the tokenized input dominates.

Run:
    flock /tmp/crossencoder-bench.lock .venv/bin/python benchmarks/predict_memory.py --pairs 200000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXT = "Berlin is the capital and largest city of Germany by both area and population with about 3.5 million people"


def measure(model_dir: str, pairs: int, chunk: int | None) -> dict[str, float]:
    """Load the model, predict ``pairs`` pairs with ``_ENCODE_CHUNK = chunk`` (None: the default); peak RSS and time."""
    import crossencoder.model.cross_encoder as module
    from crossencoder import CrossEncoder

    if chunk is not None:
        module._ENCODE_CHUNK = chunk
    model = CrossEncoder(model_dir, device="cpu")
    data = [(f"query number {i} about berlin", f"{TEXT} {i}") for i in range(pairs)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    model.predict(data, batch_size=256, show_progress_bar=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"chunk": module._ENCODE_CHUNK, "before_mb": before, "peak_mb": peak, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--child", nargs=2, metavar=("MODEL_DIR", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        chunk = int(args.child[1])
        print(json.dumps(measure(args.child[0], args.pairs, chunk or None)))
        return 0
    from crossencoder.testing import make_tiny_cross_encoder

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(make_tiny_cross_encoder(os.path.join(tmp, "tiny")))
        rows = []
        for name, chunk in [("all at once", 10**9), ("chunked (default)", 0)]:
            out = subprocess.run([sys.executable, __file__, "--pairs", str(args.pairs), "--child", model_dir,
                                  str(chunk)], capture_output=True, text=True, check=True).stdout
            rows.append({"setting": name, **json.loads(out.strip().splitlines()[-1])})
    print(f"{args.pairs} pairs, tiny 2-layer model, {os.cpu_count()} cores\n")
    print("| setting | pairs tokenized at once | peak RSS (MB) | growth during predict (MB) | seconds |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        chunk = "all" if r["chunk"] >= args.pairs else r["chunk"]
        print(f"| {r['setting']} | {chunk} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['before_mb']:.0f} | "
              f"{r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
