"""``crossencoder rank``, ``crossencoder score`` and ``crossencoder models``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from crossencoder.cli.common import (
    InputError, add_model_arguments, check_positive, load_model, model_options, require_one_label, to_json,
)
from crossencoder.files import parse_json_line, pick_text, read_lines

PASSAGE_KEYS = ("text", "passage", "document")
FIRST_KEYS = ("text_a", "query", "sentence1", "premise")
SECOND_KEYS = ("text_b", "passage", "document", "text", "sentence2", "hypothesis")


def register(subparsers: argparse._SubParsersAction) -> None:
    rank = subparsers.add_parser(
        "rank", help="re-rank passages for a query",
        description="Score every passage of FILE against a query and print them best first (score<TAB>passage).",
        epilog='example:\n  crossencoder rank --query "How many people live in Berlin?" --top-k 3 passages.txt',
    )
    add_model_arguments(rank)
    rank.add_argument("--query", "-q", help="the query (required unless --ray, where each input row has its own)")
    rank.add_argument("--top-k", "-k", type=int, help="print only the best K passages")
    rank.add_argument("--json", action="store_true", help="one JSON object per line: rank, corpus_id, score, text")
    rank.add_argument("--long-documents", choices=["max", "mean", "first"],
                      help="score passages longer than the model window in overlapping windows, aggregated this way "
                           "(default: truncate)")
    rank.add_argument("--stride", type=int, help="tokens shared by consecutive windows (with --long-documents)")
    add_prompt_arguments(rank, "query")
    rank.add_argument("file", nargs="?", default="-",
                      help="one passage per line, or JSONL with a 'text' field; - for stdin (default). "
                           "With --ray: Parquet/JSONL rows (query_id, query, candidates list), or a folder of them")
    ray_group = add_ray_arguments(rank, "crossencoder rank --ray --num-workers 4 --top-k 10 candidates.parquet ranked/")
    ray_group.add_argument("--query-column", default="query", help="with --ray: query text column (default query)")
    ray_group.add_argument("--candidates-column", default="candidates",
                           help="with --ray: column of the candidate passage list (default candidates)")
    ray_group.add_argument("--id-column", default="query_id", help="with --ray: query id column (default query_id)")
    rank.set_defaults(func=run_rank)

    score = subparsers.add_parser(
        "score", help="score sentence pairs",
        description="Score each pair of FILE (TSV 'a<TAB>b' or JSONL with text_a/text_b, query/passage or "
                    "sentence1/sentence2), one result per line in input order. Classifiers print the label and "
                    "the probability of each label.",
        epilog="example:\n  printf 'A man eats\\tSomeone is eating\\n' | crossencoder score -m stsb-TinyBERT-L4 -",
    )
    add_model_arguments(score)
    score.add_argument("--json", action="store_true", help="one JSON object per line")
    score.add_argument("--symmetric", action="store_true",
                       help="score each pair in both orders and average (similarity, paraphrase; not NLI)")
    score.add_argument("--header", action="store_true", help="the TSV file has a header row (skipped)")
    add_prompt_arguments(score, "first text of each pair")
    score.add_argument("file", nargs="?", default="-",
                       help="pairs file; - for stdin (default). With --ray: a Parquet/JSONL file or folder")
    ray_group = add_ray_arguments(
        score, "crossencoder score --ray --num-workers 4 --text-columns query passage pairs.parquet scores/"
    )
    ray_group.add_argument("--text-columns", nargs=2, default=["text_a", "text_b"], metavar=("A", "B"),
                           help="with --ray: the two text columns (default text_a text_b)")
    ray_group.add_argument("--id-column", default="id", help="with --ray: id column copied to the output (default id)")
    score.set_defaults(func=run_score)

    models = subparsers.add_parser("models", help="list well-known pretrained cross-encoders",
                                   description="Catalog of pretrained cross-encoders; short names work as --model.")
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")
    models.set_defaults(func=run_models)


def add_prompt_arguments(parser: argparse.ArgumentParser, target: str) -> None:
    """Add ``--prompt`` / ``--prompt-name`` (one or the other): text put before the ``target`` of each pair."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--prompt", help=f"text prepended to the {target} (overrides the model's default prompt; "
                                        "'' turns it off)")
    group.add_argument("--prompt-name", help=f"name of one of the model's saved prompts to prepend to the {target} "
                                             "(default: the model's default_prompt_name, if any)")


def add_ray_arguments(parser: argparse.ArgumentParser, example: str) -> argparse._ArgumentGroup:
    """Add the ``--ray`` options and the OUT positional shared by ``score`` and ``rank``; returns the group."""
    group = parser.add_argument_group(
        "distributed (Ray)",
        "Run on a pool of Ray actors: FILE is read in shards and OUT gets one Parquet file per shard. "
        "A re-run with the same FILE and OUT skips finished shards. Needs pip install 'crossencoder[ray]'. "
        f"Example:\n  {example}",
    )
    group.add_argument("--ray", action="store_true", help="run on Ray: read FILE, write Parquet to OUT")
    group.add_argument("--address", help="Ray cluster address (auto, ray://host:10001); default: start a local Ray")
    group.add_argument("--num-workers", type=int, default=1, help="actors, one model each (default 1)")
    group.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per actor (default 1)")
    group.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per actor, fractions share one")
    group.add_argument("--shard-rows", type=int, help="input rows per shard / output file (default 10000 pairs, "
                                                      "1000 queries)")
    parser.add_argument("output", nargs="?", metavar="OUT", help="with --ray: output folder")
    return group


def _run_on_ray(args: argparse.Namespace, job: str, **job_kwargs: Any) -> int:
    """Run ``score_dataset`` / ``rank_dataset`` from the command line options; a summary goes to stderr."""
    if not args.output:
        raise InputError(f"--ray needs an output folder: crossencoder {job} --ray FILE OUT.")
    if args.file == "-":
        raise InputError("--ray reads a Parquet/JSONL file or folder, not stdin.")
    check_positive(args, "shard_rows", "num_workers")
    for flag, value in (("--cpus-per-worker", args.cpus_per_worker), ("--gpus-per-worker", args.gpus_per_worker)):
        if not value >= 0:
            raise InputError(f"{flag} must be 0 or more, got {value:g}.")
    from crossencoder import distributed

    if not args.verbose:
        # Ray's start-up and executor notices, and Ray Data's (its own logger, which does not propagate).
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if args.shard_rows is not None:
        job_kwargs["shard_rows"] = args.shard_rows
    # Each actor builds its model from these same options; by name, so the job records them (and the prompt) and
    # a resume with another model, other options or another prompt is refused.
    run = distributed.score_dataset if job == "score" else distributed.rank_dataset
    result = run(
        args.model, args.file, args.output, model_kwargs=model_options(args), id_column=args.id_column,
        num_workers=args.num_workers, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
        prompt_name=args.prompt_name, prompt=args.prompt, address=args.address,
        num_cpus_per_worker=args.cpus_per_worker, num_gpus_per_worker=args.gpus_per_worker,
        **job_kwargs,
    )
    print(f"{job}: {result.rows_written} rows in {result.output_dir} ({result.shards} shards, "
          f"{result.shards_skipped} done by an earlier run) in {result.seconds:.1f}s", file=sys.stderr)
    if result.bad_rows:
        print(f"{job}: {len(result.bad_rows)} bad row(s) not processed, listed in {result.errors_path}",
              file=sys.stderr)
        return 1
    return 0


def _check_not_ray_only(args: argparse.Namespace) -> None:
    if args.output:
        raise InputError(f"OUT ({args.output}) needs --ray; without it results go to stdout.")


def _is_jsonl(path: str, lines: list[tuple[int, str]]) -> bool:
    """JSONL by extension (.jsonl/.ndjson/.json); otherwise (stdin, .txt, .tsv...) JSONL when the first line is a
    JSON object, so a passage that merely starts with "{" stays text."""
    if path != "-" and Path(path).suffix.lower() in {".jsonl", ".ndjson", ".json"}:
        return True
    if not lines or not lines[0][1].lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(lines[0][1]), dict)
    except json.JSONDecodeError:
        return False


def read_passages(path: str) -> list[str]:
    """Passages from a text file (one per line) or JSONL (``text`` field)."""
    lines = list(read_lines(path))
    name = "<stdin>" if path == "-" else path
    if _is_jsonl(path, lines):
        return [pick_text(parse_json_line(name, n, line), PASSAGE_KEYS, name, n) for n, line in lines]
    return [line for _, line in lines]


def read_pairs(path: str, header: bool = False) -> list[tuple[str, str]]:
    """Pairs from TSV (``a<TAB>b``; ``header`` skips its first line) or JSONL."""
    lines = list(read_lines(path))
    name = "<stdin>" if path == "-" else path
    pairs = []
    if _is_jsonl(path, lines):
        for n, line in lines:
            obj = parse_json_line(name, n, line)
            pairs.append((pick_text(obj, FIRST_KEYS, name, n), pick_text(obj, SECOND_KEYS, name, n)))
        return pairs
    for n, line in lines[1:] if header else lines:
        parts = line.split("\t")
        if len(parts) != 2:
            raise InputError(f"{name}:{n}: expected 2 tab-separated texts, got {len(parts)} field(s).")
        pairs.append((parts[0], parts[1]))
    return pairs


def _check_nonempty(items: list, path: str, what: str) -> None:
    if not items:
        raise InputError(f"{'<stdin>' if path == '-' else path}: no {what} found.")


def run_rank(args: argparse.Namespace) -> int:
    check_positive(args, "top_k")
    if args.stride is not None and args.long_documents is None:
        raise InputError("--stride sets the overlap of --long-documents windows: add --long-documents max.")
    if args.ray and args.query is not None:
        raise InputError("--query is not used with --ray: each input row has its own query.")
    if args.ray:
        return _run_on_ray(args, "rank", query_column=args.query_column, candidates_column=args.candidates_column,
                           top_k=args.top_k, long_documents=args.long_documents, stride=args.stride)
    _check_not_ray_only(args)
    if args.query is None:
        raise InputError("--query is required (or use --ray with a file of queries and their candidates).")
    if not args.query.strip():
        raise InputError("--query is empty.")
    passages = read_passages(args.file)
    _check_nonempty(passages, args.file, "passages")
    model = load_model(args)
    require_one_label(model, args.model, "rank")
    hits = model.rank(args.query, passages, top_k=args.top_k, return_documents=True, batch_size=args.batch_size,
                      long_documents=args.long_documents, stride=args.stride, prompt_name=args.prompt_name,
                      prompt=args.prompt)
    out = sys.stdout
    for position, hit in enumerate(hits, start=1):
        if args.json:
            out.write(to_json({"rank": position, **hit}, ensure_ascii=False) + "\n")
        else:
            # One hit per line even when a JSONL passage holds line breaks (--json keeps the text exact).
            text = " ".join(hit["text"].splitlines())
            out.write(f"{hit['score']:.4f}\t{text}\n")
    return 0


def run_score(args: argparse.Namespace) -> int:
    if args.ray:
        return _run_on_ray(args, "score", text_columns=tuple(args.text_columns), symmetric=args.symmetric)
    _check_not_ray_only(args)
    pairs = read_pairs(args.file, header=args.header)
    _check_nonempty(pairs, args.file, "pairs")
    model = load_model(args)
    out = sys.stdout
    options = {"batch_size": args.batch_size, "symmetric": args.symmetric, "prompt_name": args.prompt_name,
               "prompt": args.prompt}
    if model.num_labels == 1:
        for score in model.predict(pairs, **options).tolist():
            out.write(to_json({"score": score}) + "\n" if args.json else f"{score:.6f}\n")
        return 0
    probabilities = model.predict(pairs, apply_softmax=True, **options)
    names = [model.id2label.get(i, str(i)) for i in range(model.num_labels)]
    for row in probabilities.tolist():
        label = names[max(range(len(row)), key=row.__getitem__)]
        if args.json:
            record: dict[str, Any] = {"label": label, "probabilities": dict(zip(names, row))}
            out.write(to_json(record) + "\n")
        else:
            out.write(label + "\t" + "\t".join(f"{name}={p:.4f}" for name, p in zip(names, row)) + "\n")
    return 0


def run_models(args: argparse.Namespace) -> int:
    from crossencoder.catalog import CATALOG

    if args.json:
        print(to_json([e.to_dict() for e in CATALOG.values()], indent=2))
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
