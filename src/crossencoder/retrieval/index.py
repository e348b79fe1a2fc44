"""A persistent on-disk search index: FAISS vectors, a bm25s index and the texts in SQLite, checked by a manifest.

Layout of an index folder::

    manifest.json   format version, bi-encoder, dimensions, count, and the size + sha256 of every other file
    dense.faiss     faiss IndexFlatIP (exact inner product; default) or IndexHNSWFlat (approximate)
    bm25/           bm25s index (English stop words removed, no stemming)
    docs.sqlite     table docs(pos, id, title, text); ``pos`` is the row of the document in both indexes

The folder appears only when complete (built in a temporary sibling and renamed into place), and the manifest is
written last, so a folder without a valid manifest is never used. Embedding, the slow part, is saved chunk by chunk
under ``.<name>.partial/`` next to the output, so a killed build resumes where it stopped.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from crossencoder.errors import CrossEncoderError, ModelNotFoundError, require_extra
from crossencoder.retrieval.bi_encoder import BiEncoder
from crossencoder.retrieval.corpus import Document, read_corpus
from crossencoder.files import InputError, atomic_dir, file_sha256, write_atomic, write_text_atomic

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DENSE_FILE = "dense.faiss"
BM25_DIR = "bm25"
DOCS_FILE = "docs.sqlite"
BUILD_STATE = "build.json"
PROBE_TEXT = "How many people live in Berlin?"
# What an index folder holds; overwrite=True replaces no folder with anything else in it.
_PARTS = {MANIFEST, DENSE_FILE, BM25_DIR, DOCS_FILE}
IndexType = Literal["flat", "hnsw"]
# (row in the index, score) pairs, best first.
Hits = list[tuple[int, float]]


class IndexFolderError(CrossEncoderError, ValueError):
    """A missing, half-written or corrupt index folder, or a bad build request."""


class BiEncoderMismatchError(IndexFolderError):
    """The bi-encoder given to :meth:`Index.open` embeds texts differently from the index's own."""


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an index folder, checked for the fields and format version this code reads.

    Raises:
        IndexFolderError: the folder is missing (or is a file), has no manifest (half-written), a corrupt one, or one
            of another format version.
    """
    folder = Path(path)
    if folder.is_file():
        # Typically the corpus, given where its index belongs.
        raise IndexFolderError(f"{folder}: is a file, not an index folder (build one with `crossencoder index`).")
    if not folder.is_dir():
        raise IndexFolderError(f"{folder}: no such index folder (build one with `crossencoder index`).")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise IndexFolderError(f"{folder}: no {MANIFEST}; not an index, or a half-written one. Rebuild it.")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        version = manifest["format_version"]
        spec = manifest["bi_encoder"]
        int(spec["dimensions"]), str(spec["model"]), int(spec["max_length"])
        int(manifest["count"])
        for meta in manifest["files"].values():
            int(meta["size"]), str(meta["sha256"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IndexFolderError(f"{manifest_path}: corrupt manifest ({type(exc).__name__}: {exc}). "
                               "Rebuild the index.") from None
    if version != FORMAT_VERSION:
        raise IndexFolderError(f"{folder}: index format {version}, this version reads {FORMAT_VERSION}. "
                               "Rebuild it.")
    return manifest


@functools.cache
def _bm25s() -> Any:
    """Import bm25s with its logger following the application's level (once: a level set later by the user stays).

    bm25s sets its own logger to DEBUG, which would print its chatter ("INFO: The query is empty ...") on every
    command line; without a level of its own it shows only what the root logger lets through (``-v`` for INFO).
    """
    require_extra("bm25s", feature="The BM25 index")
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


def _bm25_tokenize(texts: Sequence[str], ids: bool) -> Any:
    return _bm25s().tokenize(list(texts), stopwords="en", return_ids=ids, show_progress=False)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a temporary name
        np.save(f, array, allow_pickle=False)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def model_identity(model_name_or_path: str | os.PathLike) -> str:
    """How the manifest records a bi-encoder: a folder as its absolute path, a Hub id or catalog name as given."""
    name = os.fspath(model_name_or_path)
    return os.path.abspath(name) if os.path.isdir(name) else name


def _encoder_identity(encoder: BiEncoder) -> dict[str, Any]:
    return {
        "model": model_identity(encoder.model_name_or_path),
        "pooling": encoder.pooling,
        "max_length": encoder.max_length,
        "dimensions": encoder.dimension,
    }


def probe_vector(encoder: BiEncoder) -> list[float]:
    """The encoder's vector of a fixed text: a fingerprint of its weights, which its path does not give (a model
    re-trained into the same folder would otherwise mix two models' vectors in one index)."""
    return [round(float(x), 6) for x in encoder.encode([PROBE_TEXT], show_progress_bar=False, normalize=True)[0]]


def _same_encoder(probe: Sequence[float], other: Sequence[float]) -> bool:
    # Cosine of unit vectors; a tolerance, not equality: another device or kernel changes the last digits.
    return len(probe) == len(other) and float(np.dot(probe, other)) >= 0.999


def _embed_resumable(
    documents: Sequence[Document],
    encoder: BiEncoder,
    cache: Path,
    key: dict[str, Any],
    probe: list[float],
    chunk_size: int,
    batch_size: int,
    show_progress_bar: bool | None,
) -> np.ndarray:
    """Embed the corpus chunk by chunk into ``cache``; chunks already there from an interrupted build are reused
    when the corpus, the settings and the encoder's :func:`probe_vector` are the same."""
    state_file = cache / BUILD_STATE
    if state_file.is_file():
        try:
            previous = json.loads(state_file.read_text(encoding="utf-8"))
            same = previous["key"] == key and _same_encoder(previous["probe"], probe)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            same = False
        if not same:
            logger.info("Discarding the partial build in %s: corpus, settings or bi-encoder changed.", cache)
            shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(state_file, {"key": key, "probe": probe})
    starts = range(0, len(documents), chunk_size)
    chunks: list[np.ndarray] = []
    done = 0
    with tqdm(total=len(documents), desc="Embedding corpus", unit="doc",
              disable=None if show_progress_bar is None else not show_progress_bar) as bar:
        for number, start in enumerate(starts):
            path = cache / f"chunk-{number:05d}.npy"
            if path.is_file():
                chunk = np.load(path)
                done += 1
            else:
                texts = [d.content for d in documents[start:start + chunk_size]]
                chunk = encoder.encode(texts, batch_size=batch_size, show_progress_bar=False, normalize=True)
                write_atomic(path, lambda tmp, chunk=chunk: _save_npy(tmp, chunk))
            chunks.append(chunk)
            bar.update(len(chunk))
    if done:
        logger.info("Resumed: %d of %d embedding chunks came from the interrupted build.", done, len(starts))
    return np.concatenate(chunks).astype(np.float32, copy=False)


def _write_docs(path: Path, documents: Sequence[Document]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE docs (pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT, text TEXT)")
        db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?)",
                       ((i, d.id, d.title, d.text) for i, d in enumerate(documents)))
    db.close()


def build_index(
    corpus_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    bi_encoder: BiEncoder | None = None,
    index_type: IndexType = "flat",
    hnsw_m: int = 32,
    batch_size: int = 64,
    chunk_size: int = 1024,
    overwrite: bool = False,
    show_progress_bar: bool | None = None,
) -> Index:
    """Build a search index of a JSONL corpus into ``out_dir``.

    Args:
        corpus_path: BEIR-style JSONL (``_id``, ``title``, ``text``); validated completely before any work.
        out_dir: Index folder to create.
        bi_encoder: Embeds the documents (default: :class:`BiEncoder` with all-MiniLM-L6-v2).
        index_type: ``"flat"`` (exact inner-product search) or ``"hnsw"`` (approximate, faster on large corpora).
        hnsw_m: Graph degree of the HNSW index.
        batch_size: Texts per embedding batch.
        chunk_size: Documents per saved embedding chunk (the unit of resumption).
        overwrite: Replace an existing folder at ``out_dir``.
        show_progress_bar: Progress bar while embedding; None shows it on a terminal.

    Returns:
        The opened :class:`Index`.

    Raises:
        InputError: bad corpus (names file and line), ``"-"`` (stdin), or no word BM25 can index.
        IndexFolderError: ``out_dir`` is a file, or exists and ``overwrite`` is False, or holds files that are not
            part of an index (never replaced), or is the current folder or one above it, or a bad ``index_type``.
        ValueError: ``hnsw_m``, ``batch_size`` or ``chunk_size`` is not a positive integer.

    Example:
        >>> index = build_index("corpus.jsonl", "my-index")
        >>> index.count
        5000
    """
    require_extra("faiss", feature="The vector index")
    import faiss

    bm25s = _bm25s()
    if index_type not in ("flat", "hnsw"):
        raise IndexFolderError(f"index_type must be 'flat' or 'hnsw', got {index_type!r}.")
    for name, value in (("hnsw_m", hnsw_m), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        # faiss aborts the whole process on an HNSW graph degree of 0.
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise IndexFolderError(f"{out} is a file, not a folder; choose a folder for the index.")
    cwd = Path.cwd().resolve()
    if out.resolve() == cwd or out.resolve() in cwd.parents:
        # The build writes a sibling folder and renames it into place: the shell would be left in a deleted folder.
        raise IndexFolderError(f"{out_dir} is the current folder or holds it, and building the index replaces that "
                               f"folder; run the command from outside it (e.g. from {out.resolve().parent} with "
                               f"--out {out.resolve().name}).")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise IndexFolderError(f"{out} already exists and is not empty; choose another folder, or replace it with "
                              "overwrite=True (CLI: --overwrite).")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in _PARTS) if out.is_dir() else []
    if foreign:
        # Replacing the folder would delete them (a mistyped --out, or the folder that holds the corpus).
        raise IndexFolderError(f"{out} holds files that are not part of an index (e.g. {foreign[0]!r}); refusing to "
                               "replace it: choose another folder, or delete it yourself.")
    if os.fspath(corpus_path) == "-":
        # The index records the corpus file's path and checksum (and a resumed build re-reads the file).
        raise InputError("The corpus cannot be read from stdin: save it to a file and index that file.")
    documents = read_corpus(corpus_path)
    # Checked before the slow embedding: bm25s cannot index a corpus without a single term.
    bm25_tokens = _bm25_tokenize([d.content for d in documents], ids=True)
    if not bm25_tokens.vocab:
        raise InputError(f"{corpus_path}: no document has a word BM25 can index (words of two or more characters "
                         "that are not English stop words).")
    encoder = bi_encoder or BiEncoder()
    identity = {**_encoder_identity(encoder), "probe": probe_vector(encoder)}
    corpus_sha = file_sha256(Path(corpus_path))
    cache = out.with_name(f".{out.name}.partial")
    key = {**_encoder_identity(encoder), "corpus_sha256": corpus_sha, "chunk_size": chunk_size}
    vectors = _embed_resumable(documents, encoder, cache, key, identity["probe"], chunk_size, batch_size,
                               show_progress_bar)

    with atomic_dir(out) as tmp:
        if index_type == "flat":
            dense = faiss.IndexFlatIP(encoder.dimension)
        else:
            dense = faiss.IndexHNSWFlat(encoder.dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        dense.add(vectors)
        faiss.write_index(dense, str(tmp / DENSE_FILE))
        bm25 = bm25s.BM25()
        bm25.index(bm25_tokens, show_progress=False)
        bm25.save(str(tmp / BM25_DIR), show_progress=False)
        _write_docs(tmp / DOCS_FILE, documents)
        files = {
            str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(tmp.rglob("*")) if p.is_file()
        }
        manifest = {
            "format_version": FORMAT_VERSION,
            "bi_encoder": identity,
            "count": len(documents),
            "index_type": index_type,
            "bm25": {"library": "bm25s", "version": bm25s.__version__, "stopwords": "en", "stemmer": None},
            "corpus": {"path": os.path.abspath(corpus_path), "sha256": corpus_sha},
            "files": files,
        }
        # Written last: its presence means every file above is complete.
        _write_json_atomic(tmp / MANIFEST, manifest)
    shutil.rmtree(cache, ignore_errors=True)
    return Index.open(out, bi_encoder=encoder)


def _matches(manifest: dict[str, Any], encoder: BiEncoder) -> bool:
    """Whether ``encoder`` makes the vectors the index was built with (indexes without a probe are trusted)."""
    probe = manifest["bi_encoder"].get("probe")
    return probe is None or _same_encoder(probe, probe_vector(encoder))


def _unreadable(folder: Path, manifest: dict[str, Any], part: str, exc: BaseException) -> IndexFolderError:
    """The error for a part that passed the size check but cannot be read (the checksum is skipped by default)."""
    corpus = manifest.get("corpus")
    corpus_path = corpus.get("path") if isinstance(corpus, dict) else None
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return IndexFolderError(f"{folder / part}: unreadable ({reason}); the index is corrupt. Rebuild it with "
                            f"`crossencoder index {corpus_path or 'CORPUS'} --out {folder} --overwrite`.")


def _bm25_culprit(folder: Path) -> str:
    """The first file of the bm25s folder that does not parse, to name it in the error (else the folder)."""
    for file in sorted((folder / BM25_DIR).iterdir()):
        try:
            if file.suffix == ".json":
                json.loads(file.read_text(encoding="utf-8"))
            elif file.suffix == ".npy":
                np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return f"{BM25_DIR}/{file.name}"
    return BM25_DIR


class Index:
    """An opened index folder (see the module docstring); use :meth:`open` or :func:`build_index`.

    Attributes:
        path: The folder.
        manifest: The parsed ``manifest.json``.
        count: Number of documents.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], dense: Any, bm25: Any, db: sqlite3.Connection,
                 bi_encoder: BiEncoder | None, device: str | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.count = int(manifest["count"])
        self._dense = dense
        self._bm25 = bm25
        self._db = db
        self._bi_encoder = bi_encoder
        self._device = device

    @classmethod
    def open(cls, path: str | os.PathLike, bi_encoder: BiEncoder | None = None, verify: bool = True,
             device: str | None = None) -> Index:
        """Open an index folder after checking it against its manifest.

        Args:
            path: The index folder.
            bi_encoder: Embeds queries; default: the model named in the manifest (loaded on first dense search).
            verify: Check every file's sha256 (sizes are always checked).
            device: Where the manifest's query encoder runs (default: best available); unused with ``bi_encoder``.

        Raises:
            IndexFolderError: the folder is missing, has no manifest (half-written), a different format version, or a
                file that is missing, truncated, altered or unreadable.
            BiEncoderMismatchError: ``bi_encoder`` does not match the index (an :class:`IndexFolderError` too).
        """
        require_extra("faiss", feature="The vector index")
        import faiss

        bm25s = _bm25s()
        folder = Path(path)
        manifest = read_manifest(folder)
        expected_dims = int(manifest["bi_encoder"]["dimensions"])
        count = int(manifest["count"])
        files = {name: (int(meta["size"]), str(meta["sha256"])) for name, meta in manifest["files"].items()}
        for name, (size, sha256) in files.items():
            file = folder / name
            if not file.is_file() or file.stat().st_size != size:
                raise IndexFolderError(f"{folder}: {name} is missing or truncated; the index is corrupt. "
                                       "Rebuild it.")
            if verify and file_sha256(file) != sha256:
                raise IndexFolderError(f"{folder}: {name} does not match its checksum; the index is corrupt. "
                                       "Rebuild it.")
        if bi_encoder is not None and bi_encoder.dimension != expected_dims:
            raise BiEncoderMismatchError(f"{folder}: built with {expected_dims}-dimensional vectors, the given "
                                         f"bi-encoder makes {bi_encoder.dimension}.")
        if bi_encoder is not None and not _matches(manifest, bi_encoder):
            raise BiEncoderMismatchError(
                f"{folder}: the given bi-encoder embeds texts differently from the bi-encoder the index was built "
                f"with ({manifest['bi_encoder']['model']!r}); its query vectors would not match the documents'."
            )
        # Damage that keeps the sizes (bit rot, a partial overwrite) only shows when a part is read: name the part.
        try:
            dense = faiss.read_index(str(folder / DENSE_FILE))
        except RuntimeError as exc:
            raise _unreadable(folder, manifest, DENSE_FILE, exc) from None
        try:
            bm25 = bm25s.BM25.load(str(folder / BM25_DIR), show_progress=False)
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            raise _unreadable(folder, manifest, _bm25_culprit(folder), exc) from None
        db = sqlite3.connect(f"{(folder / DOCS_FILE).resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        try:
            (rows,) = db.execute("SELECT COUNT(*) FROM docs").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise _unreadable(folder, manifest, DOCS_FILE, exc) from None
        if dense.ntotal != count or rows != count:
            db.close()
            raise IndexFolderError(f"{folder}: the parts hold {dense.ntotal} vectors and {rows} texts, the manifest "
                                   f"says {count}. Rebuild it.")
        return cls(folder, manifest, dense, bm25, db, bi_encoder, device)

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, count={self.count}, type={self.manifest['index_type']!r})"

    @property
    def bi_encoder(self) -> BiEncoder:
        """The query encoder (loaded from the manifest's model on first use).

        Raises:
            ModelNotFoundError: the manifest's model cannot be loaded (names the index).
            IndexFolderError: it no longer makes the vectors the index was built with (re-trained in place).
        """
        if self._bi_encoder is None:
            spec = self.manifest["bi_encoder"]
            try:
                encoder = BiEncoder(spec["model"], max_length=spec["max_length"], device=self._device)
            except ModelNotFoundError as exc:
                # The user named no model here: say which index needs it, and what works without it.
                raise ModelNotFoundError(
                    f"{self.path} was built with bi-encoder {spec['model']!r}, which cannot be loaded ({exc}). "
                    "Restore it, pass a copy with Index.open(..., bi_encoder=...) (CLI: --bi-encoder COPY), or "
                    "search with method='bm25' (CLI: --method bm25)."
                ) from None
            if not _matches(self.manifest, encoder):
                raise IndexFolderError(
                    f"{self.path}: the bi-encoder {spec['model']!r} embeds texts differently than when the index was "
                    "built (its weights changed); rebuild the index with `crossencoder index "
                    f"{self.manifest['corpus']['path']} --out {self.path} --overwrite`, or search with method='bm25'."
                )
            self._bi_encoder = encoder
        return self._bi_encoder

    def _select(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows of a query on the text store; a damaged page (found only when read) is an :class:`IndexFolderError`.

        Raises:
            IndexFolderError: ``docs.sqlite`` is corrupt (names it and how to rebuild).
        """
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.ProgrammingError:
            raise  # e.g. a closed index: a mistake in the caller, not a damaged file
        except sqlite3.DatabaseError as exc:
            raise _unreadable(self.path, self.manifest, DOCS_FILE, exc) from None

    def documents(self, positions: Sequence[int]) -> list[Document]:
        """The documents at the given rows, in the given order.

        Raises:
            IndexFolderError: ``docs.sqlite`` is corrupt.
        """
        unique = sorted(set(int(p) for p in positions))
        found: dict[int, Document] = {}
        for start in range(0, len(unique), 500):  # SQLite caps the number of bound parameters
            part = unique[start:start + 500]
            rows = self._select(f"SELECT pos, id, title, text FROM docs WHERE pos IN ({','.join('?' * len(part))})",
                                part)
            found.update({pos: Document(i, t or "", x or "") for pos, i, t, x in rows})
        return [found[int(p)] for p in positions]

    def positions(self, ids: Sequence[str]) -> dict[str, int]:
        """Row of each document id found in the index (unknown ids are left out).

        Raises:
            IndexFolderError: ``docs.sqlite`` is corrupt.
        """
        found: dict[str, int] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            part = unique[start:start + 500]
            found.update(dict(self._select(f"SELECT id, pos FROM docs WHERE id IN ({','.join('?' * len(part))})",
                                           part)))
        return found

    def bm25_search(self, queries: Sequence[str], k: int) -> list[Hits]:
        """BM25 top-``k`` rows of each query (documents sharing no term with the query are left out)."""
        k = min(k, self.count)
        tokens = _bm25_tokenize(queries, ids=False)
        rows, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [[(int(r), float(s)) for r, s in zip(row, score) if s > 0] for row, score in zip(rows, scores)]

    def dense_search(self, queries: Sequence[str], k: int, batch_size: int = 64) -> list[Hits]:
        """Inner-product (cosine) top-``k`` rows of each query."""
        k = min(k, self.count)
        vectors = self.bi_encoder.encode(list(queries), batch_size=batch_size, show_progress_bar=False)
        scores, rows = self._dense.search(vectors, k)
        return [[(int(r), float(s)) for r, s in zip(row, score) if r >= 0] for row, score in zip(rows, scores)]

    def close(self) -> None:
        """Close the text store."""
        self._db.close()

    def __enter__(self) -> Index:
        """Use as ``with Index.open(path) as index:``; the text store closes on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
