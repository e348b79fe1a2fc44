"""Distributed jobs on Ray: score or re-rank datasets of pairs too large for one process.

``score_dataset`` and ``rank_dataset`` read Parquet or JSONL, cut it into fixed shards, run the shards on a
Ray Data pool of actors (one ``CrossEncoder`` each, CPU or GPU), and write one Parquet file per shard; a re-run
skips finished shards. Ray is an optional extra (``pip install 'crossencoder[ray]'``): importing this package
needs its pyarrow but not Ray itself (the jobs import Ray); either missing raises :class:`RayNotInstalledError`.

Example:
    >>> from crossencoder.distributed import score_dataset
    >>> result = score_dataset("cross-encoder/ms-marco-MiniLM-L6-v2", "pairs.parquet", "scores/", num_workers=4)
    >>> result.rows_written, result.bad_rows
"""

from crossencoder.distributed.errors import DistributedJobError, JobInputError, RayNotInstalledError

try:
    import pyarrow  # noqa: F401  (part of the ray extra; the shard files are Arrow/Parquet)
except ImportError:
    raise RayNotInstalledError() from None

from crossencoder.distributed.jobs import JobResult, rank_dataset, score_dataset  # noqa: E402

__all__ = [
    "DistributedJobError",
    "JobInputError",
    "JobResult",
    "RayNotInstalledError",
    "rank_dataset",
    "score_dataset",
]
