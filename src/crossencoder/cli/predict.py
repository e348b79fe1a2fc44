"""``crossencoder rank``, ``crossencoder score`` and ``crossencoder models``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from crossencoder.cli.common import (
    InputError,
    add_model_arguments,
    load_model,
    parse_json_line,
    pick_text,
    read_lines,
)

PASSAGE_KEYS = ("text", "passage", "document")
FIRST_KEYS = ("text_a", "query", "sentence1", "premise")
SECOND_KEYS = ("text_b", "passage", "document", "text", "sentence2", "hypothesis")


def register(subparsers: argparse._SubParsersAction) -> None:
    rank = subparsers.add_parser(
        "rank", help="re-rank passages for a query",
        description="Score every passage of FILE against a query and print them best first (score<TAB>passage).",
        epilog='example: crossencoder rank --query "How many people live in Berlin?" --top-k 3 passages.txt',
    )
    add_model_arguments(rank)
    rank.add_argument("--query", "-q", required=True, help="the query")
    rank.add_argument("--top-k", "-k", type=int, help="print only the best K passages")
    rank.add_argument("--json", action="store_true", help="one JSON object per line: rank, corpus_id, score, text")
    rank.add_argument("--long-documents", choices=["max", "mean", "first"],
                      help="score passages longer than the model window in overlapping windows, aggregated this way "
                           "(default: truncate)")
    rank.add_argument("--stride", type=int, help="tokens shared by consecutive windows (with --long-documents)")
    rank.add_argument("file", nargs="?", default="-",
                      help="one passage per line, or JSONL with a 'text' field; - for stdin (default)")
    rank.set_defaults(func=run_rank)

    score = subparsers.add_parser(
        "score", help="score sentence pairs",
        description="Score each pair of FILE (TSV 'a<TAB>b' or JSONL with text_a/text_b, query/passage or "
                    "sentence1/sentence2), one result per line in input order. Classifiers print the label and "
                    "the probability of each label.",
        epilog="example: printf 'A man eats\\tSomeone is eating\\n' | crossencoder score -m stsb-TinyBERT-L4 -",
    )
    add_model_arguments(score)
    score.add_argument("--json", action="store_true", help="one JSON object per line")
    score.add_argument("file", nargs="?", default="-", help="pairs file; - for stdin (default)")
    score.set_defaults(func=run_score)

    models = subparsers.add_parser("models", help="list well-known pretrained cross-encoders",
                                   description="Catalog of pretrained cross-encoders; short names work as --model.")
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")
    models.set_defaults(func=run_models)


def _is_jsonl(lines: list[tuple[int, str]]) -> bool:
    return bool(lines) and lines[0][1].lstrip().startswith("{")


def read_passages(path: str) -> list[str]:
    """Passages from a text file (one per line) or JSONL (``text`` field)."""
    lines = list(read_lines(path))
    name = "<stdin>" if path == "-" else path
    if _is_jsonl(lines):
        return [pick_text(parse_json_line(name, n, line), PASSAGE_KEYS, name, n) for n, line in lines]
    return [line for _, line in lines]


def read_pairs(path: str) -> list[tuple[str, str]]:
    """Pairs from TSV (``a<TAB>b``) or JSONL."""
    lines = list(read_lines(path))
    name = "<stdin>" if path == "-" else path
    pairs = []
    if _is_jsonl(lines):
        for n, line in lines:
            obj = parse_json_line(name, n, line)
            pairs.append((pick_text(obj, FIRST_KEYS, name, n), pick_text(obj, SECOND_KEYS, name, n)))
        return pairs
    for n, line in lines:
        parts = line.split("\t")
        if len(parts) != 2:
            raise InputError(f"{name}:{n}: expected 2 tab-separated texts, got {len(parts)} field(s).")
        pairs.append((parts[0], parts[1]))
    return pairs


def _check_nonempty(items: list, path: str, what: str) -> None:
    if not items:
        raise InputError(f"{'<stdin>' if path == '-' else path}: no {what} found.")


def run_rank(args: argparse.Namespace) -> int:
    if args.top_k is not None and args.top_k < 1:
        raise InputError("--top-k must be a positive integer.")
    passages = read_passages(args.file)
    _check_nonempty(passages, args.file, "passages")
    model = load_model(args)
    hits = model.rank(args.query, passages, top_k=args.top_k, return_documents=True, batch_size=args.batch_size,
                      long_documents=args.long_documents, stride=args.stride)
    out = sys.stdout
    for position, hit in enumerate(hits, start=1):
        if args.json:
            out.write(json.dumps({"rank": position, **hit}, ensure_ascii=False) + "\n")
        else:
            out.write(f"{hit['score']:.4f}\t{hit['text']}\n")
    return 0


def run_score(args: argparse.Namespace) -> int:
    pairs = read_pairs(args.file)
    _check_nonempty(pairs, args.file, "pairs")
    model = load_model(args)
    out = sys.stdout
    if model.num_labels == 1:
        for score in model.predict(pairs, batch_size=args.batch_size).tolist():
            out.write(json.dumps({"score": score}) + "\n" if args.json else f"{score:.6f}\n")
        return 0
    probabilities = model.predict(pairs, batch_size=args.batch_size, apply_softmax=True)
    names = [model.id2label.get(i, str(i)) for i in range(model.num_labels)]
    for row in probabilities.tolist():
        label = names[max(range(len(row)), key=row.__getitem__)]
        if args.json:
            record: dict[str, Any] = {"label": label, "probabilities": dict(zip(names, row))}
            out.write(json.dumps(record) + "\n")
        else:
            out.write(label + "\t" + "\t".join(f"{name}={p:.4f}" for name, p in zip(names, row)) + "\n")
    return 0


def run_models(args: argparse.Namespace) -> int:
    from crossencoder.catalog import CATALOG

    if args.json:
        print(json.dumps([e.to_dict() for e in CATALOG.values()], indent=2))
        return 0
    header = ("name", "task", "labels", "activation", "max_len", "published")
    rows = [
        (e.name, e.task, str(e.num_labels), e.activation, str(e.max_length),
         ", ".join(f"{k} {v:.2f}" for k, v in e.published.items()) or "-")
        for e in CATALOG.values()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
