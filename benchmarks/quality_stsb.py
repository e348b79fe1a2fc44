"""STSb quality: fine-tune a 1-label cross-encoder from all-MiniLM-L6-v2 and compare it with the bi-encoder.

The default recipe trains on STSb train plus SICK TRAIN relatedness (soft BCE labels: STSb score / 5, SICK
(score - 1) / 4), each label blended half and half with the all-MiniLM-L6-v2 bi-encoder's cosine (distillation,
``--teacher-weight 0.5``), 4 epochs at lr 1.2e-4. It then reports Spearman/Pearson on STSb dev for (a) the trained
cross-encoder and (b) the bi-encoder (cosine of mean-pooled embeddings) on the same pairs, plus wall time and cores.
The model of the last epoch is reported (no checkpoint selection on dev). ``--no-sick --teacher-weight 0 --lr 5e-5``
is the plain STSb-only recipe.

Run (under the shared lock):
    flock /tmp/crossencoder-bench.lock .venv/bin/python benchmarks/quality_stsb.py

Training runs in float32 on any device; ``--device cuda`` gives the same figures up to GPU rounding in about two
minutes (on CPU, 2 idle EPYC cores take about 0.5 s per step: about 22 minutes for the 2,548 steps).

The trained model folder (printed at the end) works with ``crossencoder score -m <folder>`` and
``crossencoder eval -m <folder> <file>``. JSON results go to ``--out`` (default
``/tmp/crossencoder-bench/quality_stsb.json``, outside the repo).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import set_seed  # noqa: E402

from crossencoder import CrossEncoder  # noqa: E402
from crossencoder.evaluation import CorrelationEvaluator, correlation_metrics, format_metrics  # noqa: E402
from crossencoder.testing import minilm_dir  # noqa: E402
from crossencoder.training import (  # noqa: E402
    Trainer,
    TrainingArguments,
    bi_encoder_similarity,
    blend_teacher_labels,
)

DATA = Path("/work/shared/data/stsb")
SICK = Path("/work/shared/data/nli/SICK_train_trial.tsv")


def read_stsb(path: Path) -> list[tuple[str, str, float]]:
    """Read an STSb csv (tab-separated, no quoting, 7 or 9 fields, CRLF or LF) as (s1, s2, score 0..5)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for line in handle:
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) >= 7:
                rows.append((fields[5], fields[6], float(fields[4])))
    return rows


def read_sick_rows(path: Path) -> list[dict[str, str]]:
    """SICK's TSV as dicts keyed by its header (sentence_A, sentence_B, entailment_label, relatedness_score,
    SemEval_set, ...); also read by quality_pairs.py."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_sick_relatedness(path: Path) -> list[tuple[str, str, float]]:
    """SICK TRAIN rows as (sentence_A, sentence_B, relatedness 1..5 mapped to 0..1); TRIAL is left out."""
    return [(r["sentence_A"], r["sentence_B"], (float(r["relatedness_score"]) - 1.0) / 4.0)
            for r in read_sick_rows(path) if r["SemEval_set"] == "TRAIN"]


def bi_encoder_scores(pairs: list[tuple]) -> tuple[list[float], str]:
    """Cosine similarity of all-MiniLM-L6-v2 mean-pooled embeddings (crossencoder's own bi-encoder); also used by
    quality_pairs.py. Returns the scores and the implementation's name for the results file."""
    return bi_encoder_similarity(pairs).tolist(), "crossencoder.retrieval.BiEncoder"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="/work/models/stsb-minilm", help="trained model folder (outside the repo)")
    parser.add_argument("--run-dir", default="/work/models/stsb-minilm-run", help="checkpoints of the run")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with sts-train.csv and sts-dev.csv")
    parser.add_argument("--device", default="cpu", help="cpu (the reference setting) or cuda")
    parser.add_argument("--out", default="/tmp/crossencoder-bench/quality_stsb.json", help="JSON results file")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per pair (STSb pairs are short)")
    parser.add_argument("--lr", type=float, default=1.2e-4,
                        help="peak learning rate (a GPU sweep over 3 seeds: 5e-5 0.876, 8e-5 0.882, 1.2e-4 0.884)")
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--both-directions", action="store_true",
                        help="train on (a, b) and (b, a): similarity is symmetric, the cross-encoder input is not")
    parser.add_argument("--sick", action=argparse.BooleanOptionalAction, default=True,
                        help="also train on SICK TRAIN relatedness (4,439 pairs, 1..5 scaled to 0..1); dev stays STSb")
    parser.add_argument("--teacher-weight", type=float, default=0.5,
                        help="blend the bi-encoder's cosine (mapped to 0..1 by a least-squares fit on the train labels) "
                             "into each soft label with this weight: distillation from the bi-encoder")
    parser.add_argument("--max-steps", type=int, help="stop early (timing runs only; the schedule is shortened)")
    parser.add_argument("--train-word-embeddings", action="store_true",
                        help="also fine-tune the 11.7M word-embedding weights (default: frozen, ~15%% faster steps)")
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints of an earlier run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.getLogger("transformers").setLevel(logging.ERROR)

    train = read_stsb(args.data / "sts-train.csv")
    dev = read_stsb(args.data / "sts-dev.csv")
    print(f"STSb: train {len(train)} pairs, dev {len(dev)} pairs; torch threads {torch.get_num_threads()}",
          file=sys.stderr)
    started = time.perf_counter()
    bi_scores, bi_impl = bi_encoder_scores(dev)
    bi = correlation_metrics(bi_scores, [s for _, _, s in dev])
    bi_seconds = time.perf_counter() - started

    set_seed(args.seed)  # the fresh regression head is initialised at load time
    model = CrossEncoder(minilm_dir(), num_labels=1, max_length=args.max_length, device=args.device)
    if not args.train_word_embeddings:
        # Half of MiniLM's parameters are the vocabulary embeddings; 5.7k pairs barely move them, and skipping
        # their dense gradient and AdamW update saves CPU time. The trainer only optimises trainable parameters.
        model.model.get_input_embeddings().weight.requires_grad_(False)
    if args.fresh:
        shutil.rmtree(args.run_dir, ignore_errors=True)
    training_args = TrainingArguments(
        output_dir=args.run_dir, num_epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
        learning_rate=args.lr, warmup_ratio=args.warmup_ratio, seed=args.seed, load_best_model_at_end=False,
        logging_steps=50,
        base_model_name="sentence-transformers/all-MiniLM-L6-v2",
        mixed_precision="no",  # float32 on every device, so a GPU run does the same arithmetic as the CPU one
        train_data_name="STSb train (scores / 5 as soft labels)"
        + (" + SICK TRAIN relatedness ((score - 1) / 4)" if args.sick else "")
        + (f" (labels blended with the all-MiniLM-L6-v2 bi-encoder cosine, weight {args.teacher_weight})"
           if args.teacher_weight else ""),
    )
    evaluator = CorrelationEvaluator(dev, name="STSb dev", batch_size=64)
    started = time.perf_counter()
    pairs = [(a, b, s / 5.0) for a, b, s in train]
    if args.sick:
        pairs += read_sick_relatedness(SICK)
    if args.teacher_weight:
        pairs = blend_teacher_labels(pairs, bi_encoder_similarity(pairs), args.teacher_weight)
    if args.both_directions:
        pairs += [(b, a, s) for a, b, s in pairs]
    result = Trainer(model, pairs, loss="bce", evaluator=evaluator, args=training_args).train()
    train_seconds = time.perf_counter() - started
    ce = result.metrics

    output = Path(args.output)
    if output.exists():
        shutil.rmtree(output)
    shutil.copytree(result.model_path, output)

    # Similarity is symmetric but the cross-encoder's input is not: also report both orders averaged.
    trained = CrossEncoder(output, device=args.device)
    sym = CorrelationEvaluator(dev, batch_size=64, symmetric=True)(trained)
    table = {
        "cross-encoder spearman": ce["spearman"], "cross-encoder pearson": ce["pearson"],
        "cross-encoder spearman, both orders averaged": sym["spearman"],
        "bi-encoder spearman": bi["spearman"], "bi-encoder pearson": bi["pearson"],
        "spearman gain (points)": 100 * (ce["spearman"] - bi["spearman"]),
    }
    print(format_metrics(table, title="STSb dev (1,500 pairs)"))
    cores = len(os.sched_getaffinity(0))  # what taskset allows, not what the machine has
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{cores} CPU cores"
    print(f"training wall time {train_seconds / 60:.1f} min on {device} "
          f"({result.global_step} steps); bi-encoder scoring {bi_seconds:.0f}s ({bi_impl})")
    print(f"trained model folder: {output}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
        f"{cores} cores", "device": device, "torch_threads": torch.get_num_threads(),
        "command": "flock /tmp/crossencoder-bench.lock .venv/bin/python benchmarks/quality_stsb.py "
                   + " ".join(sys.argv[1:]),
        "hyperparameters": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                            "max_length": args.max_length,
                            "warmup_ratio": args.warmup_ratio, "seed": args.seed, "loss": "bce (soft labels)",
                            "both_directions": args.both_directions, "sick": args.sick,
                            "teacher_weight": args.teacher_weight,
                            "max_steps": args.max_steps,
                            "word_embeddings": "trained" if args.train_word_embeddings else "frozen"},
        "cross_encoder": ce, "bi_encoder": bi, "bi_encoder_impl": bi_impl,
        "train_seconds": train_seconds, "steps": result.global_step, "history": result.history,
        "model_folder": str(output),
    }, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
