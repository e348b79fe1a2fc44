"""GPU speed: our torch backend in fp32 / fp16 / bf16 against sentence-transformers' CrossEncoder on one GPU.

One run, one model folder, the same pairs for every row. Rows: sentence-transformers fp32 and fp16 (its
``model_kwargs={"dtype": ...}``), ours fp32 / fp16 / bf16. Columns: pairs/s (median of ``--repeats`` passes over all
pairs after a warm-up), ratio to sentence-transformers fp32, p50 latency of ranking 100 passages for one query,
padded-token overhead of the batching, and for reduced-precision rows the Spearman correlation with our fp32 scores and
the fraction of identical top-10 sets over the rank-100 queries.

Usage (on a CUDA machine; the lead ran it on a lent H100)::

    python benchmarks/speed_gpu.py --model DIR --sentences sts-dev.csv --out results.json

``--model`` is a cross-encoder folder (e.g. one written by ``crossencoder.testing.make_minilm_cross_encoder``);
``--sentences`` is the STSb TSV (``../shared/data/stsb/sts-dev.csv``), from which passages of ~100-250 tokens are built.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import time

import numpy as np
import torch
from scipy.stats import spearmanr


def build_workload(path: str, n_queries: int, n_docs: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """Queries are STSb sentences; passages join random sentences until they reach 70-180 words (~100-250 tokens)."""
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    sentences = [s for r in rows if len(r) >= 7 for s in (r[5], r[6])]
    rng = random.Random(seed)
    queries = rng.sample(sentences, n_queries)
    docs = []
    for _ in range(n_queries):
        passages = []
        for _ in range(n_docs):
            target, words = rng.randint(70, 180), []
            while len(words) < target:
                words += rng.choice(sentences).split()
            passages.append(" ".join(words[:target]))
        docs.append(passages)
    return queries, docs


def padding_overhead(lengths: list[int], batches: list[list[int]]) -> float:
    """Padded tokens computed per real token, minus one."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return padded / sum(lengths) - 1


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: kernels, allocator, tokenizer caches
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--sentences", required=True)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--docs", type=int, default=100, help="passages per query (the rank-100 workload)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="speed_gpu.json")
    args = parser.parse_args()

    from sentence_transformers import CrossEncoder as STCrossEncoder

    from crossencoder import CrossEncoder
    from crossencoder.model.batching import token_budget_batches

    queries, docs = build_workload(args.sentences, args.queries, args.docs, seed=0)
    pairs = [(q, d) for q, ds in zip(queries, docs) for d in ds]
    n = len(pairs)

    def ours(dtype):
        model = CrossEncoder(args.model, device="cuda", dtype=dtype)
        return model, lambda batch: model.predict(batch, batch_size=args.batch_size, show_progress_bar=False)

    def theirs(dtype):
        model = STCrossEncoder(args.model, device="cuda", model_kwargs={"dtype": dtype})
        return model, lambda batch: model.predict(batch, batch_size=args.batch_size, show_progress_bar=False)

    rows = [("sentence-transformers fp32", theirs, torch.float32), ("sentence-transformers fp16", theirs, torch.float16),
            ("crossencoder fp32", ours, "float32"), ("crossencoder fp16", ours, "float16"),
            ("crossencoder bf16", ours, "bfloat16")]
    results, all_scores = [], {}
    for name, make, dtype in rows:
        model, predict = make(dtype)
        scores = np.asarray(predict(pairs), dtype=np.float64).ravel()
        seconds = timed(lambda: predict(pairs), args.repeats)
        for q, ds in zip(queries, docs):  # warm-up: each batch shape's kernels are picked on first use
            predict([(q, d) for d in ds])
        latencies = []
        for q, ds in zip(queries, docs):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            predict([(q, d) for d in ds])
            torch.cuda.synchronize()
            latencies.append(time.perf_counter() - t0)
        results.append({"row": name, "pairs_per_s": n / seconds, "p50_rank100_ms": 1000 * statistics.median(latencies)})
        all_scores[name] = scores
        del model
        torch.cuda.empty_cache()

    reference = all_scores["crossencoder fp32"]
    for row in results:
        if row["row"].endswith("fp32"):
            continue
        scores = all_scores[row["row"]]
        per_query, ref_q = scores.reshape(len(queries), -1), reference.reshape(len(queries), -1)
        same_top10 = [set(np.argsort(-a)[:10]) == set(np.argsort(-b)[:10]) for a, b in zip(per_query, ref_q)]
        row["spearman_vs_fp32"] = float(spearmanr(scores, reference).statistic)
        row["max_abs_diff_vs_fp32"] = float(np.max(np.abs(scores - reference)))
        row["top10_identical"] = float(np.mean(same_top10))

    # Exactness of our fp32 against the peer's fp32 on the same folder (the drop-in claim, on GPU).
    parity = float(np.max(np.abs(reference - all_scores["sentence-transformers fp32"])))
    tokenizer = CrossEncoder(args.model, device="cpu").tokenizer
    lengths = [len(ids) for ids in tokenizer([q for q, _ in pairs], [d for _, d in pairs], truncation=True,
                                             max_length=512)["input_ids"]]
    fixed = [list(range(i, min(i + args.batch_size, n))) for i in range(0, n, args.batch_size)]
    sorted_batches = list(token_budget_batches(lengths, args.batch_size, None))
    base = results[0]["pairs_per_s"]
    for row in results:
        row["ratio_vs_st_fp32"] = row["pairs_per_s"] / base
    summary = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "pairs": n,
               "mean_tokens": statistics.mean(lengths), "batch_size": args.batch_size,
               "padding_overhead_input_order": padding_overhead(lengths, fixed),
               "padding_overhead_length_sorted": padding_overhead(lengths, sorted_batches),
               "fp32_max_abs_diff_vs_sentence_transformers": parity, "rows": results}
    print(f"{summary['gpu']}, torch {summary['torch']}, {n} pairs, mean {summary['mean_tokens']:.0f} tokens")
    print(f"{'row':28} {'pairs/s':>9} {'x ST fp32':>9} {'p50 rank100':>12} {'spearman':>9} {'top10 same':>10}")
    for r in results:
        print(f"{r['row']:28} {r['pairs_per_s']:9.0f} {r['ratio_vs_st_fp32']:9.2f} {r['p50_rank100_ms']:10.1f}ms "
              f"{r.get('spearman_vs_fp32', float('nan')):9.4f} {r.get('top10_identical', float('nan')):10.2f}")
    print(f"padding overhead: {summary['padding_overhead_input_order']:.1%} in input order, "
          f"{summary['padding_overhead_length_sorted']:.1%} length-sorted; fp32 max |ours - ST| = {parity:.2e}")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
