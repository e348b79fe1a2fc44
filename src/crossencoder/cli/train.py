"""``crossencoder train``, ``crossencoder eval`` and ``crossencoder calibrate``."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crossencoder.cli.common import InputError, add_model_arguments, load_model, require_one_label, to_json

# Options of `train` that a YAML/JSON config may set (the same names as the flags, with underscores).
TRAIN_DEFAULTS: dict[str, Any] = {
    "model": None, "train": None, "eval": None, "output_dir": None, "task": "auto", "loss": None,
    "label_scale": 1.0, "epochs": 1, "max_steps": None, "batch_size": 16, "gradient_accumulation_steps": 1,
    "learning_rate": 2e-5, "warmup_ratio": 0.1, "weight_decay": 0.01, "max_grad_norm": 1.0, "seed": 42,
    "eval_steps": None, "save_steps": None, "save_total_limit": 2, "metric_for_best_model": None,
    "early_stopping_patience": None, "load_best_model_at_end": True, "mixed_precision": "auto", "resume": True,
    "overwrite_output_dir": False, "max_length": None, "device": None, "trust_remote_code": False,
    "teacher_bi_encoder": None, "teacher_weight": 0.5, "label_temperature": None, "header": False,
}

# Data files whose first row may be a header (--header).
_TEXT_TABLES = {".tsv", ".txt", ".csv"}

TRAIN_EPILOG = """\
examples:
  crossencoder train --model ./all-MiniLM-L6-v2 --train sts-train.tsv --eval sts-dev.tsv \\
      --label-scale 5 --epochs 4 --learning-rate 5e-5 --output-dir runs/sts
  crossencoder train --config train.yaml --epochs 2      # flags override the config file
  crossencoder train --model ./all-MiniLM-L6-v2 --train sts-train.tsv --label-scale 5 \\
      --teacher-bi-encoder default --output-dir runs/sts-kd   # labels = 0.5 gold + 0.5 bi-encoder cosine

data files: .jsonl / .json objects or .tsv / .csv rows:
  regression      text_a<TAB>text_b<TAB>score        (BCE needs scores in [0, 1]: see --label-scale)
  classification  text_a<TAB>text_b<TAB>label-name   (fresh head with one output per class)
  ranking         query<TAB>positive<TAB>negative... or JSONL {"query", "positive", "negatives"} /
                  {"query", "documents", "labels"}
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train``, ``eval`` and ``calibrate`` commands."""
    train = subparsers.add_parser(
        "train", help="fine-tune a cross-encoder", epilog=TRAIN_EPILOG,
        description="Fine-tune a cross-encoder on pairs or ranking data; writes checkpoints, the best model and "
                    "OUTPUT_DIR/final (with a model card). Re-running the same command resumes an interrupted run.",
    )
    s = argparse.SUPPRESS  # unset flags must not override the config file
    train.add_argument("--config", help="YAML or JSON file with any of the options below (underscored names)")
    train.add_argument("--model", "-m", default=s, help="model folder, Hub id or catalog name to start from")
    train.add_argument("--train", default=s, help="training data file")
    train.add_argument("--eval", default=s, help="evaluation data file (metrics every epoch / --eval-steps)")
    train.add_argument("--output-dir", "-o", default=s, help="run folder")
    train.add_argument("--header", action="store_true", default=s,
                       help="the TSV/CSV files (--train, --eval) have a header row")
    train.add_argument("--task", choices=["auto", "regression", "classification", "ranking"], default=s,
                       help="default: guessed from the data")
    train.add_argument("--loss", default=s,
                       help="bce, ce, mse, margin_mse, mnrl, listnet (default: bce / ce / mnrl by task)")
    train.add_argument("--label-scale", type=float, default=s, help="divide regression labels by this (STS: 5)")
    train.add_argument("--label-temperature", type=float, default=s,
                       help="listnet: divide the labels by this before their softmax; smaller = a sharper target "
                            "(default 1)")
    train.add_argument("--epochs", type=int, default=s, help="passes over the training data")
    train.add_argument("--max-steps", type=int, default=s, help="stop after N optimizer steps")
    train.add_argument("--batch-size", type=int, default=s, help="examples per forward pass")
    train.add_argument("--gradient-accumulation-steps", type=int, default=s, help="forward passes per optimizer step")
    train.add_argument("--learning-rate", "--lr", type=float, default=s, help="peak learning rate of AdamW")
    train.add_argument("--warmup-ratio", type=float, default=s, help="share of the steps with a linear warm-up")
    train.add_argument("--weight-decay", type=float, default=s, help="AdamW weight decay")
    train.add_argument("--max-grad-norm", type=float, default=s, help="gradient clipping norm")
    train.add_argument("--seed", type=int, default=s, help="seed of the weights' init and the data order")
    train.add_argument("--eval-steps", type=int, default=s, help="evaluate every N steps (default: each epoch)")
    train.add_argument("--save-steps", type=int, default=s, help="checkpoint every N steps (default: at evals)")
    train.add_argument("--save-total-limit", type=int, default=s, help="recent checkpoints kept")
    train.add_argument("--metric-for-best-model", default=s, help="e.g. spearman, accuracy, ndcg@10")
    train.add_argument("--early-stopping-patience", type=int, default=s,
                       help="stop after N evaluations without improvement (default: never)")
    train.add_argument("--no-load-best-model-at-end", dest="load_best_model_at_end", action="store_false",
                       default=s, help="keep the last weights rather than the best evaluated ones")
    train.add_argument("--mixed-precision", choices=["auto", "no", "fp16", "bf16"], default=s,
                       help="auto: bf16 or fp16 on a CUDA GPU, off on CPU")
    train.add_argument("--no-resume", dest="resume", action="store_false", default=s,
                       help="do not continue from checkpoints in OUTPUT_DIR")
    train.add_argument("--overwrite-output-dir", action="store_true", default=s,
                       help="with --no-resume: delete the old checkpoints")
    train.add_argument("--max-length", type=int, default=s, help="maximum tokens per pair (default: the model's)")
    train.add_argument("--teacher-bi-encoder", metavar="MODEL", default=s,
                       help="regression: blend this bi-encoder's cosine into the labels (distillation); "
                            "'default' = all-MiniLM-L6-v2")
    train.add_argument("--teacher-weight", type=float, default=s,
                       help="the teacher's share of each label (default 0.5)")
    train.add_argument("--device", default=s, help="cpu, cuda, cuda:1, mps (default: best available)")
    train.add_argument("--trust-remote-code", action="store_true", default=s, help="allow code from the model folder")
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    options = {action.dest: action for action in train._actions if action.dest in TRAIN_DEFAULTS}
    for action in options.values():  # SUPPRESS hides the defaults from the help: name them there
        default = TRAIN_DEFAULTS[action.dest]
        if default is not None and not isinstance(default, bool) and "default" not in (action.help or ""):
            action.help = f"{action.help or ''} (default {default})".lstrip()
    train.set_defaults(func=run_train, train_options=options)

    evaluate = subparsers.add_parser(
        "eval", help="evaluate a model on a labelled data file",
        description="Score a data file and print metrics: Pearson/Spearman (scores), accuracy/F1/AP (classes), "
                    "MRR@10/NDCG@10/MAP/Recall (ranking).",
        epilog="example:\n  crossencoder eval -m runs/stsb/final sts-dev.tsv --json",
    )
    add_model_arguments(evaluate, default=None)
    evaluate.add_argument("file", help="data file (.jsonl, .json, .tsv, .csv)")
    evaluate.add_argument("--task", choices=["auto", "regression", "classification", "ranking"], default="auto",
                          help="auto: guessed from the labels (0/1 labels: classification)")
    evaluate.add_argument("--header", action="store_true", help="the TSV/CSV file has a header row")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--symmetric", action="store_true",
                          help="score each pair in both orders and average (similarity, paraphrase; not ranking)")
    evaluate.set_defaults(func=run_eval)

    calibrate = subparsers.add_parser(
        "calibrate", help="fit score calibration so scores read as probabilities",
        description="Fit Platt or temperature scaling of a 1-label model's logits on labelled 0/1 pairs, print the "
                    "expected calibration error (ECE) before and after, and store the calibration in the model "
                    "folder's config.json (used by predict(..., calibrated=True)).",
        epilog="example:\n  crossencoder calibrate -m ./my-reranker heldout.tsv --method temperature",
    )
    add_model_arguments(calibrate, default=None)
    calibrate.add_argument("file", help="labelled pairs: text_a<TAB>text_b<TAB>0|1, or JSONL with a label")
    calibrate.add_argument("--method", choices=["platt", "temperature"], default="platt",
                           help="platt: p = sigmoid(a * logit + b); temperature: b = 0 (keeps the decision threshold "
                                "at logit 0)")
    calibrate.add_argument("--output", "-o", help="save the calibrated model to this folder instead of updating MODEL")
    calibrate.add_argument("--bins", type=int, default=15, help="ECE bins (default 15)")
    calibrate.add_argument("--header", action="store_true", help="the TSV/CSV file has a header row")
    calibrate.add_argument("--json", action="store_true", help="print the result as JSON")
    calibrate.set_defaults(func=run_calibrate)


# ---------------------------------------------------------------------- helpers
def _read_config(path: str, options: dict[str, argparse.Action]) -> dict[str, Any]:
    """The options a config file sets, each checked against its flag (``options``: the flags by option name)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such config file.")
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix.lower() in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # yaml, json and the decoder raise different error types for the same user mistake
        raise InputError(f"{path}: cannot parse config ({str(exc).splitlines()[0]}).") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a mapping of option names to values.")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    aliases = {"lr": "learning_rate", "num_epochs": "epochs"}
    data = {aliases.get(k, k): v for k, v in data.items()}
    unknown = sorted(set(data) - set(TRAIN_DEFAULTS))
    if unknown:
        raise InputError(f"{path}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(TRAIN_DEFAULTS))}.")
    return {key: _config_value(path, options[key], value) for key, value in data.items()}


def _config_value(path: str, action: argparse.Action, value: Any) -> Any:
    """A config file's ``value`` for the option of ``action``, checked as its flag would be: a quoted "false" must
    not read as true, nor a list as a file name. Numbers may be strings (YAML reads ``2e-5`` as one)."""
    if isinstance(TRAIN_DEFAULTS[action.dest], bool):
        expected, ok = "true or false", isinstance(value, bool)
    elif value is None:
        return None  # ``max_grad_norm: null`` turns clipping off, ``save_total_limit: null`` keeps every checkpoint
    elif action.type is int:
        expected, ok = "an integer", isinstance(value, int) and not isinstance(value, bool)
    elif action.type is float:
        expected, ok = "a number", isinstance(value, (int, float, str)) and not isinstance(value, bool)
        try:
            value = float(value) if ok else value
        except ValueError:
            ok = False
    elif action.choices:
        expected, ok = f"one of {', '.join(action.choices)}", value in action.choices
    else:
        expected, ok = "a string", isinstance(value, str)
    if not ok:
        raise InputError(f"{path}: {action.dest} must be {expected}, got {value!r}.")
    return value


def _train_options(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults < config file < flags given on the command line."""
    options = dict(TRAIN_DEFAULTS)
    if args.config:
        options.update(_read_config(args.config, args.train_options))
    options.update({k: v for k, v in vars(args).items() if k in TRAIN_DEFAULTS})
    for required in ("model", "train", "output_dir"):
        if not options[required]:
            raise InputError(f"--{required.replace('_', '-')} is required (as a flag or in --config).")
    return options


def _load_data(path: str, header: bool = False) -> list[Any]:
    from crossencoder.training.data import load_examples

    return load_examples(path, header=header)


@contextmanager
def _naming(path: str) -> Iterator[None]:
    """Turn the library's "data[i] ..." errors into "PATH: example i+1 ..." so the user knows which file to fix."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        message, found = re.subn(r"\bdata\[(\d+)\]", lambda m: f"example {int(m.group(1)) + 1}", str(exc), count=1)
        if not found:
            raise
        raise InputError(f"{path}: {message}") from exc


def _loss(name: str, label_temperature: float | None) -> Any:
    """The loss name, or a ListNetLoss with the asked label temperature (the only loss option on the command line)."""
    if label_temperature is None:
        return name
    from crossencoder.training.losses import ListNetLoss, get_loss

    if not isinstance(get_loss(name), ListNetLoss):
        raise InputError(f"--label-temperature applies to --loss listnet, not {name}.")
    return ListNetLoss(label_temperature=float(label_temperature))


def _resolve_task(task: str, examples: list[Any]) -> str:
    from crossencoder.training.data import infer_task

    return infer_task(examples) if task == "auto" else task


def _class_names(examples: list[Any], path: str) -> list[str]:
    """Class names for a fresh head: the sorted label names, or "0".."max" for integral labels."""
    from crossencoder.evaluation.samples import to_labelled_pair

    labels = {to_labelled_pair(x, i).label for i, x in enumerate(examples)}
    names = {label for label in labels if isinstance(label, str) and not _is_number(label)}
    if names:
        numbers = labels - names
        if numbers:  # a number would be read as a class id, not as the class of that name
            header = " (a header row? pass --header)" if Path(path).suffix.lower() in _TEXT_TABLES else ""
            raise InputError(f"{path}: class labels mix names ({', '.join(sorted(names))}) and numbers "
                             f"({', '.join(sorted(map(str, numbers)))}): use one or the other{header}.")
        return sorted(names)
    try:
        ids = {float(label) for label in labels}
    except (TypeError, ValueError):
        raise InputError(f"{path}: class labels must be names or integer class ids >= 0.") from None
    if not all(i.is_integer() and i >= 0 for i in ids):
        raise InputError(f"{path}: class labels must be names or integer class ids >= 0.")
    return [str(i) for i in range(int(max(ids)) + 1)]


def _head_size(model: str, names: list[str], trust_remote_code: bool) -> int:
    """Outputs of the head to train for classes ``names``: the model's own classifier head when it already knows
    every class (an NLI model tuned on data with 2 of its 3 classes keeps its trained 3-class head and labels),
    else one fresh output per name."""
    from crossencoder.model.loading import load_config, resolve_model

    config = load_config(resolve_model(model), {"trust_remote_code": trust_remote_code})
    trained = any(name.endswith("ForSequenceClassification") for name in config.architectures or [])
    known = {str(label).lower() for label in config.id2label.values()}
    covered = all(n.lower() in known or (n.isdigit() and int(n) < config.num_labels) for n in names)
    return config.num_labels if trained and config.num_labels > 1 and covered else len(names)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _evaluation_task(task: str, examples: list[Any], requested: str) -> str:
    """The evaluator's task for data of ``task``: when the task was inferred (``requested`` is auto), numeric labels
    that are all 0 or 1 mean binary classification (accuracy, F1, average precision), not a similarity scale."""
    from crossencoder.training.data import is_binary

    return "classification" if requested == "auto" and task == "regression" and is_binary(examples) else task


def _make_evaluator(task: str, examples: list[Any], name: str, batch_size: int = 32, symmetric: bool = False):
    from crossencoder.evaluation import ClassificationEvaluator, CorrelationEvaluator, RerankingEvaluator

    if task == "ranking":
        if symmetric:
            raise InputError("--symmetric applies to pair scores and classes, not to ranking data.")
        return RerankingEvaluator(examples, name=name, batch_size=batch_size)
    if task == "classification":
        return ClassificationEvaluator(examples, name=name, batch_size=batch_size, symmetric=symmetric)
    return CorrelationEvaluator(examples, name=name, batch_size=batch_size, symmetric=symmetric)


def _scale(examples: list[Any], scale: float) -> list[Any]:
    from crossencoder.evaluation.samples import to_labelled_pair

    if not math.isfinite(scale) or scale <= 0:
        raise InputError(f"--label-scale must be a positive number, got {scale}.")
    if scale == 1.0:
        return examples
    out = []
    for i, x in enumerate(examples):
        pair = to_labelled_pair(x, i)
        try:
            out.append((pair.text_a, pair.text_b, float(pair.label) / scale))
        except (TypeError, ValueError):
            raise InputError(f"data[{i}]: --label-scale needs numeric labels, got {pair.label!r}.") from None
    return out


def _blend_teacher(examples: list[Any], task: str, teacher: str, weight: float) -> list[Any]:
    from crossencoder.retrieval import BiEncoder
    from crossencoder.training.distillation import bi_encoder_similarity, blend_teacher_labels

    if task != "regression":
        raise InputError(f"--teacher-bi-encoder blends similarity scores into regression labels; this is a {task} "
                         "task.")
    if not 0.0 <= weight <= 1.0:  # blend_teacher_labels checks it too, but only after every text is embedded
        raise InputError(f"--teacher-weight must be in [0, 1], got {weight}.")
    encoder = BiEncoder(None if teacher == "default" else teacher)
    try:
        return blend_teacher_labels(examples, bi_encoder_similarity(examples, encoder), weight)
    except ValueError as exc:
        raise InputError(f"--teacher-bi-encoder: {exc}") from None


def _print_metrics(metrics: dict[str, float], title: str) -> None:
    from crossencoder.evaluation import format_metrics

    print(format_metrics(metrics, title=title))


# ---------------------------------------------------------------------- commands
def run_train(args: argparse.Namespace) -> int:
    o = _train_options(args)
    train_examples = _load_data(o["train"], header=bool(o["header"]))
    with _naming(o["train"]):
        task = _resolve_task(o["task"], train_examples)
        if task == "regression":
            train_examples = _scale(train_examples, float(o["label_scale"]))
        data_name = Path(o["train"]).name
        if o["teacher_bi_encoder"]:
            train_examples = _blend_teacher(train_examples, task, o["teacher_bi_encoder"], float(o["teacher_weight"]))
            data_name += (f" (labels blended with {o['teacher_bi_encoder']} bi-encoder cosine, "
                          f"weight {o['teacher_weight']})")
        names = _class_names(train_examples, o["train"]) if task == "classification" else None
    eval_examples = _load_data(o["eval"], header=bool(o["header"])) if o["eval"] else None

    from transformers import set_seed

    from crossencoder import CrossEncoder
    from crossencoder.training import Trainer, TrainingArguments

    set_seed(int(o["seed"]))  # a fresh head is initialised when the model loads
    num_labels = _head_size(o["model"], names, bool(o["trust_remote_code"])) if names else 1
    model = CrossEncoder(o["model"], num_labels=num_labels, max_length=o["max_length"], device=o["device"],
                         trust_remote_code=bool(o["trust_remote_code"]))
    if names and not {n.lower() for n in names} <= {v.lower() for v in model.id2label.values()}:
        if not all(n.lstrip("-").isdigit() for n in names):
            model.config.id2label = dict(enumerate(names))
            model.config.label2id = {n: i for i, n in enumerate(names)}
    loss = o["loss"] or {"regression": "bce", "classification": "ce", "ranking": "mnrl"}[task]
    loss_fn = _loss(loss, o["label_temperature"])
    evaluator = None
    if eval_examples:
        with _naming(o["eval"]):
            evaluator = _make_evaluator(_evaluation_task(task, eval_examples, o["task"]), eval_examples,
                                        name=Path(o["eval"]).name)
            # The Trainer asks this too, but here a class the model lacks is named with the --eval file.
            evaluator.metric_names(model)
    training_args = TrainingArguments(
        output_dir=o["output_dir"], num_epochs=o["epochs"], max_steps=o["max_steps"], batch_size=o["batch_size"],
        gradient_accumulation_steps=o["gradient_accumulation_steps"], learning_rate=float(o["learning_rate"]),
        warmup_ratio=float(o["warmup_ratio"]), weight_decay=float(o["weight_decay"]),
        max_grad_norm=o["max_grad_norm"], seed=int(o["seed"]), eval_steps=o["eval_steps"],
        save_steps=o["save_steps"], save_total_limit=o["save_total_limit"],
        metric_for_best_model=o["metric_for_best_model"], early_stopping_patience=o["early_stopping_patience"],
        load_best_model_at_end=bool(o["load_best_model_at_end"]), mixed_precision=o["mixed_precision"],
        resume=bool(o["resume"]), overwrite_output_dir=bool(o["overwrite_output_dir"]),
        train_data_name=data_name,
    )
    with _naming(o["train"]):
        trainer = Trainer(model, train_examples, loss=loss_fn, evaluator=evaluator, args=training_args)
    result = trainer.train()
    if args.json:
        print(to_json({"model_path": str(result.model_path), "task": task, "loss": loss,
                          "global_step": result.global_step, "training_loss": result.training_loss,
                          "metrics": result.metrics, "best_step": result.best_step}))
    else:
        if result.metrics:
            _print_metrics(result.metrics, title=f"{evaluator.name} (step {result.global_step})")
        print(f"model saved to {result.model_path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    examples = _load_data(args.file, header=args.header)
    with _naming(args.file):
        task = _evaluation_task(_resolve_task(args.task, examples), examples, args.task)
        evaluator = _make_evaluator(task, examples, name=Path(args.file).name, batch_size=args.batch_size,
                                    symmetric=args.symmetric)
    model = load_model(args)
    if task != "classification":
        require_one_label(model, args.model, f"{task} data")
    with _naming(args.file):  # labels are checked against the model's classes here
        metrics = evaluator(model)
    if args.json:
        print(to_json({"model": args.model, "data": args.file, "task": task, "num_examples": len(examples),
                          "metrics": metrics}))
    else:
        _print_metrics(metrics, title=f"{args.model} on {args.file} ({len(examples)} examples, {task})")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from crossencoder.training.calibration import calibrate, save_calibration
    from crossencoder.files import atomic_dir

    if args.bins < 1:
        raise InputError(f"--bins must be a positive integer, got {args.bins}.")
    output = args.output
    if output and os.path.isdir(args.model) and Path(output).resolve() == Path(args.model).resolve():
        output = None  # the model's own folder: update its config.json in place, keep everything else there
    if output is None and not os.path.isdir(args.model):
        raise InputError(f"{args.model} is not a local folder: pass --output DIR to save the calibrated model.")
    if output and Path(output).exists() and (not Path(output).is_dir() or any(Path(output).iterdir())):
        raise InputError(f"--output {output} exists and is not an empty folder; name a new folder (or leave out "
                         "--output to store the calibration in the model's own folder).")
    examples = _load_data(args.file, header=args.header)
    model = load_model(args)
    require_one_label(model, args.model, "calibrate")
    with _naming(args.file):
        report = calibrate(model, examples, method=args.method, batch_size=args.batch_size, n_bins=args.bins)
    if output:
        with atomic_dir(output) as tmp:
            model.save(tmp)
        target = output
    else:
        save_calibration(args.model, report.calibration)
        target = args.model
    if args.json:
        print(to_json({**report.to_dict(), "model": target}))
    else:
        c = report.calibration
        print(f"{c['method']} calibration on {report.num_pairs} pairs: p = sigmoid({c['a']:.4f} * logit "
              f"{'+' if c['b'] >= 0 else '-'} {abs(c['b']):.4f})")
        print(f"ECE before {report.ece_before:.4f}, after {report.ece_after:.4f} ({args.bins} bins)")
        print(f"calibration stored in {Path(target) / 'config.json'}; use predict(..., calibrated=True)")
    sys.stdout.flush()
    return 0
