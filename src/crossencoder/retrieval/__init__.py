"""Retrieve and re-rank: a bi-encoder, an on-disk index (FAISS + bm25s + SQLite), hybrid search and BEIR evaluation.

Example:
    >>> from crossencoder import CrossEncoder
    >>> from crossencoder.retrieval import build_index, search
    >>> index = build_index("corpus.jsonl", "my-index")
    >>> hits = search(index, "berlin population", reranker=CrossEncoder("ms-marco-MiniLM-L6-v2"), top_k=3)
"""

from crossencoder.retrieval.beir import BeirDataset, evaluate, format_table, load_beir, read_qrels, read_queries
from crossencoder.retrieval.bi_encoder import BiEncoder, default_bi_encoder_path
from crossencoder.retrieval.corpus import Document, read_corpus
from crossencoder.retrieval.index import Index, IndexFolderError, build_index
from crossencoder.retrieval.pipeline import (
    METHODS,
    Hit,
    fuse_with_first_stage,
    reciprocal_rank_fusion,
    search,
    search_many,
)
from crossencoder.retrieval.training_data import mine_training_pairs

__all__ = [
    "METHODS", "BeirDataset", "BiEncoder", "Document", "Hit", "Index", "IndexFolderError", "build_index",
    "default_bi_encoder_path", "evaluate", "format_table", "load_beir", "mine_training_pairs", "read_corpus",
    "read_qrels", "read_queries",
    "fuse_with_first_stage", "reciprocal_rank_fusion", "search", "search_many",
]
