"""Pair-classification quality: 3-class NLI on SICK and paraphrase detection on MRPC, from all-MiniLM-L6-v2.

- NLI: train a 3-label cross-encoder (cross-entropy) on SICK TRAIN, report accuracy and macro-F1 on TRIAL.
- MRPC: carve a seeded 10% dev split from the distributed train file, train a 1-label cross-encoder (BCE) on
  the rest, in both pair orders (``--no-both-directions`` to turn that off), report accuracy and F1 on dev.
Beside each, the all-MiniLM-L6-v2 bi-encoder: logistic regression on the cosine (NLI) and the best cosine
threshold (MRPC), both fitted on the training split and applied to the dev split. The last epoch's model is
reported (no checkpoint selection on dev).

Run (under the shared lock):
    flock /tmp/crossencoder-bench.lock .venv/bin/python benchmarks/quality_pairs.py --task all

Training runs in float32 on any device (``--device cuda`` for a GPU).

Model folders go to /work/models/{sick-nli,mrpc}-minilm; JSON results to ``--out`` (default
``/tmp/crossencoder-bench/quality_pairs.json``, outside the repo; other tasks' entries in it are kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import set_seed  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_stsb import bi_encoder_scores, read_sick_rows  # noqa: E402

from crossencoder import CrossEncoder  # noqa: E402
from crossencoder.evaluation import ClassificationEvaluator, classification_metrics, format_metrics  # noqa: E402
from crossencoder.testing import minilm_dir  # noqa: E402
from crossencoder.training import Trainer, TrainingArguments, blend_teacher_labels  # noqa: E402

DATA = Path("/work/shared/data")
NLI_LABELS = ["contradiction", "entailment", "neutral"]


def read_sick(data: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """SICK TRAIN and TRIAL rows as (sentence_A, sentence_B, label name)."""
    splits: dict[str, list[tuple[str, str, str]]] = {"TRAIN": [], "TRIAL": []}
    for row in read_sick_rows(data / "nli" / "SICK_train_trial.tsv"):
        splits[row["SemEval_set"]].append((row["sentence_A"], row["sentence_B"], row["entailment_label"].lower()))
    return splits["TRAIN"], splits["TRIAL"]


def read_mrpc(data: Path, seed: int) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """MRPC train file (BOM, no header, 5 columns) split 90/10 with a fixed seed."""
    rows = []
    for line in (data / "paraphrase" / "msr_paraphrase_train.txt").read_text(encoding="utf-8-sig").splitlines():
        f = line.split("\t")
        rows.append((f[3], f[4], int(f[0])))
    random.Random(seed).shuffle(rows)
    cut = len(rows) // 10
    return rows[cut:], rows[:cut]


def train_model(name: str, train, num_labels: int, loss: str, args, evaluator) -> tuple[dict, float, Path]:
    set_seed(args.seed)
    model = CrossEncoder(minilm_dir(), num_labels=num_labels, device=args.device)
    if num_labels > 1:
        model.config.id2label = dict(enumerate(NLI_LABELS))
        model.config.label2id = {n: i for i, n in enumerate(NLI_LABELS)}
    model.model.get_input_embeddings().weight.requires_grad_(False)  # as in quality_stsb.py: CPU time
    run_dir = Path(f"/work/models/{name}-run")
    shutil.rmtree(run_dir, ignore_errors=True)
    training_args = TrainingArguments(
        output_dir=run_dir, num_epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        warmup_ratio=0.1, seed=args.seed, load_best_model_at_end=False, logging_steps=50,
        base_model_name="sentence-transformers/all-MiniLM-L6-v2", train_data_name=name,
        mixed_precision="no",  # float32 on every device, as on the reference CPU run
    )
    started = time.perf_counter()
    result = Trainer(model, train, loss=loss, evaluator=evaluator, args=training_args).train()
    seconds = time.perf_counter() - started
    output = Path(f"/work/models/{name}-minilm")
    shutil.rmtree(output, ignore_errors=True)
    shutil.copytree(result.model_path, output)
    return result.metrics, seconds, output


def run_nli(args) -> dict:
    from sklearn.linear_model import LogisticRegression

    train, dev = read_sick(args.data)
    ids = {n: i for i, n in enumerate(NLI_LABELS)}
    cos_train, impl = bi_encoder_scores(train)
    cos_dev, _ = bi_encoder_scores(dev)
    baseline = LogisticRegression().fit(np.array(cos_train)[:, None], [ids[y] for *_, y in train])
    bi = classification_metrics([ids[y] for *_, y in dev], baseline.predict(np.array(cos_dev)[:, None]))
    evaluator = ClassificationEvaluator(dev, name="SICK trial", batch_size=64)
    ce, seconds, folder = train_model("sick-nli", train, 3, "ce", args, evaluator)
    print(format_metrics({"cross-encoder accuracy": ce["accuracy"], "cross-encoder macro_f1": ce["macro_f1"],
                          "bi-encoder+LR accuracy": bi["accuracy"], "bi-encoder+LR macro_f1": bi["macro_f1"]},
                         title=f"SICK NLI, TRIAL ({len(dev)} pairs), trained on TRAIN ({len(train)})"))
    print(f"training {seconds / 60:.1f} min; model folder {folder}")
    return {"cross_encoder": ce, "bi_encoder_logreg": bi, "bi_encoder_impl": impl, "train_seconds": seconds,
            "model_folder": str(folder), "train_pairs": len(train), "dev_pairs": len(dev)}


def run_mrpc(args) -> dict:
    train, dev = read_mrpc(args.data, args.seed)
    cos_train, impl = bi_encoder_scores(train)
    cos_dev, _ = bi_encoder_scores(dev)
    y_train = np.array([y for *_, y in train])
    # Best threshold on the training split (by F1), applied to dev.
    candidates = np.unique(np.round(cos_train, 3))
    f1s = [classification_metrics(y_train, (np.array(cos_train) >= t).astype(int))["f1"] for t in candidates]
    threshold = float(candidates[int(np.argmax(f1s))])
    bi = classification_metrics([y for *_, y in dev], (np.array(cos_dev) >= threshold).astype(int))
    evaluator = ClassificationEvaluator(dev, name="MRPC dev (10% of train)", batch_size=64)
    pairs = train
    if args.teacher_weight:
        pairs = blend_teacher_labels(train, cos_train, args.teacher_weight)
    if args.both_directions:
        pairs = pairs + [(b, a, y) for a, b, y in pairs]
    ce, seconds, folder = train_model("mrpc", pairs, 1, "bce", args, evaluator)
    print(format_metrics({"cross-encoder accuracy": ce["accuracy"], "cross-encoder f1": ce["f1"],
                          "bi-encoder accuracy": bi["accuracy"], "bi-encoder f1": bi["f1"]},
                         title=f"MRPC dev ({len(dev)} pairs), trained on {len(train)} pairs; "
                               f"bi-encoder threshold {threshold:.3f}"))
    print(f"training {seconds / 60:.1f} min; model folder {folder}")
    return {"cross_encoder": ce, "bi_encoder_threshold": bi, "threshold": threshold, "bi_encoder_impl": impl,
            "train_seconds": seconds, "model_folder": str(folder), "train_pairs": len(train), "dev_pairs": len(dev)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["nli", "mrpc", "all"], default="all")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with nli/ and paraphrase/")
    parser.add_argument("--device", default="cpu", help="cpu (the reference setting) or cuda")
    parser.add_argument("--out", default="/tmp/crossencoder-bench/quality_pairs.json", help="JSON results file")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--both-directions", action=argparse.BooleanOptionalAction, default=True,
                        help="MRPC: also train on (b, a) (paraphrase is symmetric; NLI is not); +1.8 F1 points")
    parser.add_argument("--teacher-weight", type=float, default=0.0,
                        help="MRPC: blend the bi-encoder's cosine into the 0/1 labels with this weight "
                             "(crossencoder.training.blend_teacher_labels)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for task, fn in (("nli", run_nli), ("mrpc", run_mrpc)):
        if args.task in (task, "all"):
            results[task] = {**fn(args), "date": time.strftime("%Y-%m-%d"), "cores": len(os.sched_getaffinity(0)),
                             "torch_threads": torch.get_num_threads(), "device": args.device,
                             "hyperparameters": {"epochs": args.epochs, "batch_size": args.batch_size,
                                                 "lr": args.lr, "seed": args.seed, "word_embeddings": "frozen",
                                                 "both_directions": args.both_directions,
                                                 "teacher_weight": args.teacher_weight},
                             "command": "flock /tmp/crossencoder-bench.lock .venv/bin/python "
                                        "benchmarks/quality_pairs.py " + " ".join(sys.argv[1:])}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")
            print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
