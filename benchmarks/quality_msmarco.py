"""MS MARCO sample: BM25, dense, hybrid, and each re-ranked by a cross-encoder fine-tuned by 5-fold cross-validation.

The recipe is the user recipe of docs/retrieval.md: index the corpus, mine hard negatives for the training queries
from the index (hybrid retrieval, unjudged passages), cut each query's judged and mined passages into lists
(``crossencoder.training.group_pairs``) and fine-tune with the listwise ListNet loss on the graded labels, starting
from a cross-encoder already fine-tuned on sentence similarity: the STSb model that ``benchmarks/quality_stsb.py``
writes to /work/models/stsb-minilm, itself trained from the all-MiniLM-L6-v2 weights (``--init-model minilm``
starts from those weights with a fresh head instead; ``--loss bce`` trains on the pairs as before). The re-ranker
re-scores the dense and the hybrid top-``candidates`` of the held-out queries; "+ fusion" rows rank by
reciprocal-rank fusion of the re-ranker and that first stage (``crossencoder.retrieval.fuse_with_first_stage``).
The judged queries (35 of the 40 in queries.jsonl have judgments in qrels/dev.tsv) are shuffled (seeded) into
``--folds`` folds: each fold trains on the other queries and evaluates on its own, so no query is both trained and
evaluated on. NDCG@10 (graded gains), MRR@10 and Recall@100 are averaged over the queries of a fold, then mean and
standard deviation over folds are reported.

Run (under the shared lock; quality_stsb.py first if /work/models/stsb-minilm does not exist):
    flock /tmp/crossencoder-bench.lock nice -n 5 .venv/bin/python benchmarks/quality_msmarco.py

JSON results go to ``--out`` (default ``/tmp/crossencoder-bench/quality_msmarco.json``, outside the repo).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import set_seed  # noqa: E402

from crossencoder import CrossEncoder  # noqa: E402
from crossencoder.retrieval import (  # noqa: E402
    Index,
    IndexFolderError,
    build_index,
    evaluate,
    format_table,
    load_beir,
    mine_training_pairs,
)
from crossencoder.retrieval.beir import METRICS  # noqa: E402
from crossencoder.retrieval.index import file_sha256  # noqa: E402
from crossencoder.testing import minilm_dir  # noqa: E402
from crossencoder.training import (  # noqa: E402
    ListNetLoss,
    Trainer,
    TrainingArguments,
    bi_encoder_similarity,
    blend_teacher_labels,
    group_pairs,
)

DATA = Path("/work/shared/data/msmarco-sample")
STSB_MODEL = "/work/models/stsb-minilm"
LABEL_TEMPERATURE = 1 / 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/crossencoder-bench/quality_msmarco"),
                        help="index and fold models go here")
    parser.add_argument("--out", type=Path, default=Path("/tmp/crossencoder-bench/quality_msmarco.json"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, nargs="*", help="run only these fold numbers (smoke tests)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--num-negatives", type=int, default=40, help="mined hard negatives per training query")
    parser.add_argument("--mine-depth", type=int, default=300,
                        help="hybrid hits searched for unjudged negatives (the top 100 are mostly judged)")
    parser.add_argument("--max-judged", type=int, default=60,
                        help="judged passages sampled per training query (of ~107; 0 = all): balances the negatives "
                             "and keeps a fold near 4 minutes on 2 cores")
    parser.add_argument("--skip-top", type=int, default=0)
    parser.add_argument("--teacher-weight", type=float, default=0.0,
                        help="blend the index's bi-encoder cosine into the soft labels with this weight "
                             "(crossencoder.training.blend_teacher_labels; 0 = gold labels only)")
    parser.add_argument("--init-model", default=STSB_MODEL,
                        help="cross-encoder to fine-tune per fold (default: the quality_stsb.py model); 'minilm' = "
                             "the all-MiniLM-L6-v2 weights with a fresh head")
    parser.add_argument("--loss", choices=["listnet", "bce"], default="listnet",
                        help="listnet: lists of --group-size passages per step; bce: pairs, --batch-size per step")
    parser.add_argument("--group-size", type=int, default=16, help="passages per ListNet list")
    parser.add_argument("--label-temperature", type=float, default=LABEL_TEMPERATURE,
                        help="ListNet target = softmax(label / T); labels are grade / 3, so 1/3 = softmax(grade)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, help="cap optimizer steps per fold (smoke tests)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step with --loss bce")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--seed", type=int, default=12)
    return parser.parse_args()


def open_or_build_index(corpus: Path, folder: Path) -> tuple[Index, float]:
    """Reuse an index of this exact corpus from an earlier run, else build it (and time the build)."""
    start = time.perf_counter()
    try:
        index = Index.open(folder)
        if index.manifest["corpus"]["sha256"] == file_sha256(corpus):
            return index, 0.0
    except IndexFolderError:
        pass
    index = build_index(corpus, folder, overwrite=True)
    return index, time.perf_counter() - start


def make_folds(query_ids: list[str], folds: int, seed: int) -> list[list[str]]:
    ids = sorted(query_ids)
    random.Random(seed).shuffle(ids)
    return [ids[i::folds] for i in range(folds)]


def sample_judged(pairs: list[tuple[str, str, float]], per_query: int, seed: int) -> list[tuple[str, str, float]]:
    """Keep at most ``per_query`` judged pairs (label > 0) of each query, chosen at random; keep all negatives."""
    rng = random.Random(seed)
    judged: dict[str, list[tuple[str, str, float]]] = {}
    for pair in pairs:
        if pair[2] > 0:
            judged.setdefault(pair[0], []).append(pair)
    kept = {id(p) for group in judged.values() for p in rng.sample(group, min(per_query, len(group)))}
    return [p for p in pairs if p[2] == 0 or id(p) in kept]


def summarise(rows: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation over folds of every (row, metric)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in rows[0]:
        out[name] = {}
        for metric in METRICS:
            values = [r[name][metric] for r in rows]
            out[name][metric] = {"mean": statistics.fmean(values),
                                 "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    init = minilm_dir() if args.init_model == "minilm" else Path(args.init_model)
    if not init.is_dir():
        sys.exit(f"{init}: no such model folder. Run benchmarks/quality_stsb.py first (it writes {STSB_MODEL}), "
                 "or pass --init-model minilm.")
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    data = load_beir(args.data, args.split)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    index, build_seconds = open_or_build_index(data.corpus_path, args.work_dir / "index")
    print(f"index: {index.count} passages, built in {build_seconds:.0f} s", flush=True)

    first = time.perf_counter()
    overall = evaluate(index, data.queries, data.qrels, candidates=args.candidates)
    first_stage_seconds = time.perf_counter() - first
    print("\nFirst stage, all queries:\n" + format_table(overall), flush=True)

    folds = make_folds(list(data.queries), args.folds, args.seed)
    fold_rows: list[dict[str, dict[str, float]]] = []
    fold_info = []
    for number, eval_ids in enumerate(folds):
        if args.only_folds and number not in args.only_folds:
            continue
        fold_start = time.perf_counter()
        train_ids = [q for q in data.queries if q not in set(eval_ids)]
        pairs = mine_training_pairs(index, {q: data.queries[q] for q in train_ids}, data.qrels, method="hybrid",
                                    num_negatives=args.num_negatives, skip_top=args.skip_top,
                                    candidates=args.mine_depth)
        if args.max_judged:
            pairs = sample_judged(pairs, args.max_judged, args.seed)
        if args.teacher_weight:
            pairs = blend_teacher_labels(pairs, bi_encoder_similarity(pairs, index.bi_encoder), args.teacher_weight)
        if args.loss == "listnet":
            train_data, loss, batch_size = (group_pairs(pairs, args.group_size, args.seed),
                                            ListNetLoss(args.label_temperature), 1)
        else:
            train_data, loss, batch_size = pairs, "bce", args.batch_size
        set_seed(args.seed)
        model = CrossEncoder(init, num_labels=1, max_length=args.max_length, device="cpu")
        run_dir = args.work_dir / f"fold-{number}"
        result = Trainer(model, train_data, loss=loss, args=TrainingArguments(
            run_dir, num_epochs=args.epochs, max_steps=args.max_steps, batch_size=batch_size,
            learning_rate=args.learning_rate, warmup_ratio=0.1, seed=args.seed, resume=False,
            overwrite_output_dir=True, save_total_limit=1, show_progress_bar=False,
            train_data_name=f"msmarco-sample {args.split}, fold {number} training queries + mined negatives",
        )).train()
        train_seconds = time.perf_counter() - fold_start
        reranker = CrossEncoder(result.model_path, device="cpu")
        eval_queries = {q: data.queries[q] for q in eval_ids}
        row = evaluate(index, eval_queries, data.qrels, reranker=reranker, rerank_methods=["dense", "hybrid"],
                       candidates=args.candidates, fusion=True)
        fold_rows.append(row)
        fold_info.append({"fold": number, "train_queries": len(train_ids), "eval_queries": len(eval_ids),
                          "train_pairs": len(pairs), "train_examples": len(train_data), "steps": result.global_step,
                          "training_loss": result.training_loss, "train_seconds": train_seconds,
                          "total_seconds": time.perf_counter() - fold_start, "table": row})
        print(f"\nFold {number} ({len(eval_ids)} eval queries, {len(pairs)} training pairs in {len(train_data)} "
              f"examples, {result.global_step} steps, {time.perf_counter() - fold_start:.0f} s):\n" + format_table(row),
              flush=True)
        shutil.rmtree(run_dir, ignore_errors=True)

    summary = summarise(fold_rows)
    wall = time.perf_counter() - started
    print(f"\nMean ± std over {len(fold_rows)} folds (NDCG@10 graded, MRR@10, Recall@100; percent):")
    print("| method | " + " | ".join(m.upper() for m in METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for name, values in summary.items():
        cells = [f"{100 * values[m]['mean']:.1f} ± {100 * values[m]['std']:.1f}" for m in METRICS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    best_first = max(summary[m]["ndcg@10"]["mean"] for m in summary if "rerank" not in m)
    reranked = {m: summary[m]["ndcg@10"]["mean"] for m in summary if "rerank" in m}
    best_row = max(reranked, key=reranked.get) if reranked else None
    gain = 100 * (reranked[best_row] - best_first) if best_row else float("nan")
    print(f"\nBest re-ranked row ({best_row}) NDCG@10 minus best first stage: {gain:+.1f} points (target: >= +3.0)")
    print(f"Wall time: {wall:.0f} s on {os.cpu_count()} cores ({platform.processor() or platform.machine()})")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = {
        "command": " ".join([sys.executable, *sys.argv]), "settings": {k: str(v) for k, v in vars(args).items()},
        "index_build_seconds": build_seconds, "first_stage_seconds": first_stage_seconds,
        "first_stage_all_queries": overall, "folds": fold_info, "summary": summary,
        "best_rerank_row": best_row, "rerank_gain_ndcg10_points": gain, "wall_seconds": wall, "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
