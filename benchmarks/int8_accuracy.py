"""What int8 costs on a trained model: torch fp32 vs ONNX fp32 vs ONNX int8 on STSb dev.

`benchmarks/speed.py` measures int8 agreement on a seeded random head whose scores are nearly constant, which
understates it. This script uses a trained cross-encoder (e.g. the folder written by `benchmarks/quality_stsb.py`)
and reports, per backend: pairs/s, Spearman against the gold similarity scores, and Spearman / max abs difference
against the torch fp32 scores.

Run (under the shared lock)::

    flock /tmp/crossencoder-bench.lock .venv/bin/python benchmarks/int8_accuracy.py --model /work/models/stsb-minilm
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from crossencoder import CrossEncoder  # noqa: E402

BACKENDS = {
    "torch fp32": {},
    "onnx fp32": {"backend": "onnx"},
    "onnx int8": {"backend": "onnx", "backend_kwargs": {"quantize": "int8"}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained 1-label cross-encoder folder")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/stsb/sts-dev.csv"))
    parser.add_argument("--out", default="/tmp/crossencoder-bench/int8_accuracy.json")
    args = parser.parse_args()

    with open(args.data, encoding="utf-8") as f:
        rows = [fields for fields in (line.rstrip("\r\n").split("\t") for line in f) if len(fields) >= 7]
    pairs, gold = [(r[5], r[6]) for r in rows], [float(r[4]) for r in rows]

    scores: dict[str, np.ndarray] = {}
    results = []
    for name, kwargs in BACKENDS.items():
        model = CrossEncoder(args.model, device="cpu", **kwargs)  # the one-time export happens here, untimed
        started = time.perf_counter()
        scores[name] = model.predict(pairs, batch_size=64)
        seconds = time.perf_counter() - started
        reference = scores["torch fp32"]
        results.append({
            "backend": name, "pairs_per_s": len(pairs) / seconds,
            "spearman_vs_gold": float(spearmanr(scores[name], gold).statistic),
            "spearman_vs_torch_fp32": float(spearmanr(scores[name], reference).statistic),
            "max_abs_diff_vs_torch_fp32": float(np.abs(scores[name] - reference).max()),
        })

    print(f"{len(pairs)} STSb dev pairs, model {args.model}")
    print(f"{'backend':12} {'pairs/s':>8} {'Spearman/gold':>14} {'Spearman/fp32':>14} {'max |diff|':>11}")
    for r in results:
        print(f"{r['backend']:12} {r['pairs_per_s']:8.0f} {r['spearman_vs_gold']:14.4f} "
              f"{r['spearman_vs_torch_fp32']:14.4f} {r['max_abs_diff_vs_torch_fp32']:11.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "model": args.model, "pairs": len(pairs),
                               "rows": results}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
