"""``crossencoder index``, ``search``, ``mine`` and ``beir``: retrieve and re-rank over your own corpus."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from crossencoder.cli.common import InputError, check_positive, to_json
from crossencoder.files import unicode_problem, write_text_atomic

if TYPE_CHECKING:
    from crossencoder.retrieval import Index

METHOD_CHOICES = ["bm25", "dense", "hybrid"]
# search and mine embed queries with the index's own bi-encoder; --bi-encoder only names where it is now.
QUERY_ENCODER_HELP = ("the index's bi-encoder from another place (when the folder recorded in the index moved); "
                      "one that embeds texts differently is refused (default: the one recorded in the index)")


def _add_rerank_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("re-ranking")
    group.add_argument("--rerank-model", help="cross-encoder folder, Hub id or catalog name; re-rank the candidates")
    group.add_argument("--candidates", type=int, default=100,
                       help="hits taken from each first-stage retriever and handed to the re-ranker (default 100)")
    group.add_argument("--batch-size", type=int, default=32, help="pairs per cross-encoder batch (default 32)")
    group.add_argument("--max-length", type=int, help="cross-encoder tokens per pair (default: the model's)")
    group.add_argument("--long-documents", choices=["max", "mean", "first"],
                       help="score passages longer than the window in overlapping windows (default: truncate)")
    group.add_argument("--device", help="cpu, cuda, mps for the query encoder and the re-ranker (default: best "
                                        "available)")
    group.add_argument("--fuse", action="store_true",
                       help="rank by reciprocal-rank fusion of the re-ranker and the first stage (search); add "
                            "'+ fusion' rows (beir)")


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser(
        "index", help="build a search index of a JSONL corpus",
        description="Embed a corpus (JSONL with _id, title, text) and write a FAISS + BM25 + SQLite index folder. "
                    "A killed build resumes where it stopped when run again.",
        epilog="example:\n  crossencoder index corpus.jsonl --out my-index",
    )
    index.add_argument("corpus", help="JSONL corpus (BEIR format: _id, title, text)")
    index.add_argument("--out", "-o", required=True, help="index folder to create")
    index.add_argument("--bi-encoder", help="embedding model folder or Hub id (default: all-MiniLM-L6-v2)")
    index.add_argument("--index-type", choices=["flat", "hnsw"], default="flat",
                       help="flat: exact search (default); hnsw: approximate, for large corpora")
    index.add_argument("--batch-size", type=int, default=64, help="texts per embedding batch (default 64)")
    index.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    index.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    index.set_defaults(func=run_index)

    search = subparsers.add_parser(
        "search", help="search an index, optionally re-ranking with a cross-encoder",
        description="Retrieve candidates with BM25, dense or hybrid (reciprocal-rank fusion) search and print the "
                    "best TOP_K: score<TAB>id<TAB>text, one line a hit (in the id, backslash, tab and line breaks "
                    "are written as \\\\, \\t, \\n, \\r; in the text, runs of whitespace as one space), or with "
                    "--json one JSON object a hit, with the exact texts and the score of every stage.",
        epilog='example:\n  crossencoder search my-index "how many people live in berlin" '
               "--rerank-model ms-marco-MiniLM-L6-v2 --top-k 5",
    )
    search.add_argument("index", help="index folder made by `crossencoder index`")
    search.add_argument("query", help="the query")
    search.add_argument("--method", choices=METHOD_CHOICES, default="hybrid", help="first stage (default hybrid)")
    search.add_argument("--top-k", "-k", type=int, default=10, help="hits to print (default 10)")
    search.add_argument("--json", action="store_true", help="one JSON object per hit: rank, id, title, text, scores")
    search.add_argument("--bi-encoder", help=QUERY_ENCODER_HELP)
    _add_rerank_arguments(search)
    search.set_defaults(func=run_search)

    mine = subparsers.add_parser(
        "mine", help="make re-ranker training pairs: judged passages + hard negatives from an index",
        description="Write (query, passage, label) JSONL for `crossencoder train --loss bce`: every judged passage "
                    "with label relevance / max relevance, plus the best-ranked unjudged passages as negatives.",
        epilog="example:\n"
               "  crossencoder mine my-index --queries queries.jsonl --qrels qrels/train.tsv --out train.jsonl",
    )
    mine.add_argument("index", help="index folder of the corpus the judgments refer to")
    mine.add_argument("--queries", required=True, help="queries JSONL (_id, text)")
    mine.add_argument("--qrels", required=True, help="judgments TSV: query-id, corpus-id, score")
    mine.add_argument("--out", "-o", required=True, help="JSONL file to write; - for stdout")
    mine.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    mine.add_argument("--method", choices=METHOD_CHOICES, default="hybrid", help="retriever proposing negatives")
    mine.add_argument("--num-negatives", type=int, default=10, help="negatives per query (default 10)")
    mine.add_argument("--skip-top", type=int, default=0, help="skip the first N unjudged hits (likely positives)")
    mine.add_argument("--candidates", type=int, default=100, help="retrieval depth (default 100)")
    mine.add_argument("--group-size", type=int,
                      help="write listwise samples for `train --loss listnet` instead of pairs: each query's pairs "
                           "shuffled and cut into lists of this many documents (JSONL query, documents, labels)")
    mine.add_argument("--seed", type=int, default=0, help="shuffle seed for --group-size (default 0)")
    mine.add_argument("--bi-encoder", help=QUERY_ENCODER_HELP)
    mine.add_argument("--device", help="cpu, cuda, mps for the query encoder (default: best available)")
    mine.set_defaults(func=run_mine)

    beir = subparsers.add_parser(
        "beir", help="evaluate retrieval and re-ranking on a BEIR folder",
        description="NDCG@10, MRR@10 and Recall@100 of BM25, dense, hybrid and (with --rerank-model) each followed "
                    "by re-ranking, on DATA_DIR/corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv.",
        epilog="example:\n  crossencoder beir ./scifact --split test --rerank-model ms-marco-MiniLM-L6-v2",
    )
    beir.add_argument("data_dir", help="BEIR folder")
    beir.add_argument("--split", default="test", help="qrels/<split>.tsv to evaluate (default test)")
    beir.add_argument("--index", help="index folder of the corpus: reused if present, else built there "
                                      "(default: a temporary index, deleted afterwards)")
    beir.add_argument("--bi-encoder", help="embedding model when building the index (default: all-MiniLM-L6-v2); "
                                           "with an existing --index it must embed as the index's own does")
    beir.add_argument("--json", action="store_true", help="print the table as JSON")
    _add_rerank_arguments(beir)
    beir.set_defaults(func=run_beir)


def _bi_encoder(name: str | None, device: str | None):
    from crossencoder.retrieval import BiEncoder

    return BiEncoder(name, device=device)


def _open_index(folder: str | Path, bi_encoder: str | None, device: str | None, verify: bool = False,
                method: str = "hybrid") -> Index:
    """Open an index whose queries are embedded by its own bi-encoder, or by ``bi_encoder`` (``--bi-encoder``) when
    that names another copy of it.

    Args:
        folder: The index folder.
        bi_encoder: ``--bi-encoder``, or None for the model recorded in the manifest.
        device: ``--device`` of the query encoder.
        verify: Check every file's sha256 too.
        method: ``--method``: with ``bm25`` no query is embedded, so ``bi_encoder`` is neither loaded nor checked.

    Returns:
        The opened index (close it, or use it in a ``with`` block).

    Raises:
        InputError: ``bi_encoder`` cannot be loaded, or embeds texts differently from the index's bi-encoder.
        IndexFolderError: the folder is not a valid index.
    """
    from crossencoder.errors import ModelNotFoundError
    from crossencoder.retrieval import BiEncoder, Index
    from crossencoder.retrieval.index import BiEncoderMismatchError, model_identity, read_manifest

    spec = read_manifest(folder)["bi_encoder"] if bi_encoder is not None and method != "bm25" else None
    if spec is None or model_identity(bi_encoder) == spec["model"]:
        return Index.open(folder, verify=verify, device=device)
    refused = f"{folder} was built with bi-encoder {spec['model']!r}, not --bi-encoder {bi_encoder!r}"
    advice = "drop --bi-encoder to use the index's own, or build an index with it (`crossencoder index`)."
    try:
        encoder = BiEncoder(bi_encoder, device=device, max_length=spec["max_length"])
    except ModelNotFoundError as exc:
        raise InputError(f"{refused}, which cannot be loaded ({str(exc).splitlines()[0]}): {advice}") from None
    try:
        return Index.open(folder, bi_encoder=encoder, verify=verify, device=device)
    except BiEncoderMismatchError:
        raise InputError(f"{refused}, which embeds texts differently (its query vectors would not match the "
                         f"documents'): {advice}") from None


def _reranker(args: argparse.Namespace):
    from crossencoder import CrossEncoder

    if args.rerank_model is None:
        if args.long_documents or args.fuse:
            raise InputError(f"--{'long-documents' if args.long_documents else 'fuse'} needs --rerank-model.")
        return None
    return CrossEncoder(args.rerank_model, max_length=args.max_length, device=args.device)


def run_index(args: argparse.Namespace) -> int:
    from crossencoder.retrieval import build_index

    check_positive(args, "batch_size")
    index = build_index(args.corpus, args.out, bi_encoder=_bi_encoder(args.bi_encoder, args.device),
                        index_type=args.index_type, batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"indexed {index.count} documents into {args.out}", file=sys.stderr)
    return 0


def run_search(args: argparse.Namespace) -> int:
    from crossencoder.retrieval import search

    check_positive(args, "top_k", "candidates", "batch_size")
    if not args.query.strip():
        raise InputError("The query is empty.")
    # Bytes that are not UTF-8 in argv arrive as lone surrogates, which the tokenizers reject without a word why.
    if problem := unicode_problem(args.query, "The query"):
        raise InputError(f"{problem}: pass UTF-8 text.")
    with _open_index(args.index, args.bi_encoder, args.device, method=args.method) as index:
        hits = search(index, args.query, method=args.method, top_k=args.top_k, candidates=args.candidates,
                      reranker=_reranker(args), batch_size=args.batch_size, long_documents=args.long_documents,
                      fuse_first_stage=args.fuse)
    out = sys.stdout
    for rank, hit in enumerate(hits, start=1):
        if args.json:
            out.write(to_json({"rank": rank, **hit.to_dict()}, ensure_ascii=False) + "\n")
        else:
            out.write(f"{hit.score:.6f}\t{_escape_field(hit.id)}\t{' '.join(hit.content.split())}\n")
    return 0


# One line per hit and three columns whatever an id holds; the backslash is escaped too, so ids read back exactly.
_FIELD_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _escape_field(text: str) -> str:
    """``text`` as one tab-separated field: backslash, tab, line feed and carriage return written as ``\\\\``,
    ``\\t``, ``\\n``, ``\\r`` (the escapes of PostgreSQL's text format and of ``cut``-friendly TSV)."""
    return text.translate(_FIELD_ESCAPES)


def run_mine(args: argparse.Namespace) -> int:
    from crossencoder.retrieval import mine_training_pairs, read_qrels, read_queries

    check_positive(args, "candidates")
    for name in ("num_negatives", "skip_top"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}.")
    # group_pairs checks this too, but only after the (slow) mining: refuse it, and a bad --out, before mining.
    if args.group_size is not None and args.group_size < 2:
        raise InputError(f"--group-size must be at least 2, got {args.group_size}.")
    out = None if args.out == "-" else Path(args.out)
    if out is not None and out.is_dir():
        raise InputError(f"--out {out} is a folder; name the JSONL file to write.")
    if out is not None and out.exists() and not args.overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it, or name another file.")
    with _open_index(args.index, args.bi_encoder, args.device, method=args.method) as index:
        pairs = mine_training_pairs(index, read_queries(args.queries), read_qrels(args.qrels), method=args.method,
                                    num_negatives=args.num_negatives, skip_top=args.skip_top,
                                    candidates=args.candidates, qrels_source=args.qrels)
    if args.group_size is not None:
        from crossencoder.training import group_pairs

        rows = [{"query": q, "documents": docs, "labels": labels}
                for q, docs, labels in group_pairs(pairs, args.group_size, args.seed)]
        what = f"{len(rows)} lists ({len(pairs)} pairs)"
    else:
        rows = [{"query": query, "passage": passage, "label": label} for query, passage, label in pairs]
        what = f"{len(rows)} pairs"
    text = "".join(to_json(row, ensure_ascii=False) + "\n" for row in rows)
    if out is None:
        sys.stdout.write(text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text)
    print(f"wrote {what} to {out or '<stdout>'}", file=sys.stderr)
    return 0


def run_beir(args: argparse.Namespace) -> int:
    from crossencoder.retrieval import build_index, evaluate, format_table, load_beir
    from crossencoder.files import file_sha256

    check_positive(args, "candidates", "batch_size")
    data = load_beir(args.data_dir, args.split)
    reranker = _reranker(args)
    with tempfile.TemporaryDirectory(prefix="crossencoder-beir-") as scratch:
        folder = Path(args.index) if args.index else Path(scratch) / "index"
        # An empty folder (made beforehand for --index) is built into, as `crossencoder index` does.
        if folder.exists() and not (folder.is_dir() and not any(folder.iterdir())):
            # The queries are embedded with the index's own model; another --bi-encoder would silently not be used.
            index = _open_index(folder, args.bi_encoder, args.device, verify=True)
            if index.manifest["corpus"]["sha256"] != file_sha256(data.corpus_path):
                index.close()
                raise InputError(f"{folder} was built from another corpus than {data.corpus_path}.")
        else:
            index = build_index(data.corpus_path, folder, bi_encoder=_bi_encoder(args.bi_encoder, args.device))
        with index:
            table = evaluate(index, data.queries, data.qrels, reranker=reranker, candidates=args.candidates,
                             batch_size=args.batch_size, long_documents=args.long_documents, fusion=args.fuse,
                             qrels_source=str(Path(args.data_dir) / "qrels" / f"{args.split}.tsv"))
    if args.json:
        print(to_json(table, indent=2))
    else:
        # The metrics average over queries with a relevant document; others (only grade-0 judgments) are left out.
        judged = sum(any(grade > 0 for grade in docs.values()) for docs in data.qrels.values())
        left_out = f", {len(data.queries) - judged} without one left out" if judged < len(data.queries) else ""
        print(f"{args.data_dir} ({args.split}: {judged} queries with a relevant document{left_out})")
        print(format_table(table))
    return 0
