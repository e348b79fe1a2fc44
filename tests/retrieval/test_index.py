"""Index build / open: layout, resumption, corrupt and half-written folders, bad corpora."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from retrieval_helpers import DOCS, write_jsonl

from crossencoder.cli.common import InputError
from crossencoder.retrieval import BiEncoder, Index, IndexFolderError, build_index, read_corpus
from crossencoder.retrieval.index import DENSE_FILE, DOCS_FILE, MANIFEST, PROBE_TEXT


def test_build_and_open(index_dir, corpus_path, minilm_bi_encoder):
    index = Index.open(index_dir, bi_encoder=minilm_bi_encoder)
    manifest = index.manifest
    assert index.count == len(DOCS) == manifest["count"]
    assert manifest["bi_encoder"]["dimensions"] == 384 and manifest["index_type"] == "flat"
    assert {DENSE_FILE, DOCS_FILE} <= set(manifest["files"]) and any(f.startswith("bm25/") for f in manifest["files"])
    docs = index.documents([3, 0, 3])
    assert [d.id for d in docs] == ["python", "berlin", "python"]
    assert docs[1].title == "Berlin" and docs[1].text == DOCS[0]["text"]
    # Nothing but the index is left next to it (the embedding cache is removed after a build).
    assert sorted(p.name for p in index_dir.parent.iterdir()) == ["idx"]


def test_dense_vectors_are_the_bi_encoder_vectors(index_dir, minilm_bi_encoder):
    index = Index.open(index_dir, bi_encoder=minilm_bi_encoder)
    hits = index.dense_search([DOCS[1]["title"] + " " + DOCS[1]["text"]], k=2)[0]
    assert hits[0][0] == 1 and hits[0][1] == pytest.approx(1.0, abs=1e-5)


def test_missing_and_half_written_index(tmp_path, index_dir):
    with pytest.raises(IndexFolderError, match="no such index folder"):
        Index.open(tmp_path / "nope")
    half = tmp_path / "half"
    shutil.copytree(index_dir, half)
    (half / MANIFEST).unlink()
    with pytest.raises(IndexFolderError, match="half-written"):
        Index.open(half)


def test_corrupt_files_are_detected(tmp_path, index_dir):
    truncated = tmp_path / "truncated"
    shutil.copytree(index_dir, truncated)
    data = (truncated / DENSE_FILE).read_bytes()
    (truncated / DENSE_FILE).write_bytes(data[:-10])
    with pytest.raises(IndexFolderError, match="dense.faiss is missing or truncated"):
        Index.open(truncated)
    altered = tmp_path / "altered"
    shutil.copytree(index_dir, altered)
    raw = bytearray((altered / DOCS_FILE).read_bytes())
    raw[-5] ^= 0xFF
    (altered / DOCS_FILE).write_bytes(bytes(raw))
    with pytest.raises(IndexFolderError, match="checksum"):
        Index.open(altered)
    bad_manifest = tmp_path / "bad-manifest"
    shutil.copytree(index_dir, bad_manifest)
    (bad_manifest / MANIFEST).write_text("{not json")
    with pytest.raises(IndexFolderError, match="corrupt manifest"):
        Index.open(bad_manifest)


def test_existing_output_needs_overwrite(tmp_path, corpus_path, tiny_model_dir):
    encoder = BiEncoder(tiny_model_dir)
    out = tmp_path / "idx"
    build_index(corpus_path, out, bi_encoder=encoder, show_progress_bar=False)
    with pytest.raises(IndexFolderError, match="already exists"):
        build_index(corpus_path, out, bi_encoder=encoder, show_progress_bar=False)
    smaller = write_jsonl(tmp_path / "small.jsonl", DOCS[:2])
    assert build_index(smaller, out, bi_encoder=encoder, overwrite=True, show_progress_bar=False).count == 2
    assert Index.open(out).count == 2
    with pytest.raises(IndexFolderError, match="is a file, not a folder"):
        build_index(smaller, corpus_path, bi_encoder=encoder, overwrite=True, show_progress_bar=False)
    assert corpus_path.read_text().count("\n") == len(DOCS)  # the file it was pointed at is untouched


class _CountingEncoder(BiEncoder):
    """Counts embedded texts and can fail after a number of calls, like a killed process."""

    def __init__(self, path, fail_after: int | None = None) -> None:
        super().__init__(path)
        self.embedded = 0
        self.fail_after = fail_after

    def encode(self, texts, *args, **kwargs):
        if list(texts) == [PROBE_TEXT]:  # the model's fingerprint, not the corpus
            return super().encode(texts, *args, **kwargs)
        if self.fail_after is not None and self.fail_after == 0:
            raise KeyboardInterrupt
        if self.fail_after is not None:
            self.fail_after -= 1
        self.embedded += len(texts)
        return super().encode(texts, *args, **kwargs)


def test_killed_build_resumes_from_saved_chunks(tmp_path, corpus_path, tiny_model_dir):
    out = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        build_index(corpus_path, out, bi_encoder=_CountingEncoder(tiny_model_dir, fail_after=2), chunk_size=2,
                    show_progress_bar=False)
    assert not out.exists()  # never a half-written index at the target
    assert len(list((tmp_path / ".idx.partial").glob("chunk-*.npy"))) == 2
    resumed = _CountingEncoder(tiny_model_dir)
    index = build_index(corpus_path, out, bi_encoder=resumed, chunk_size=2, show_progress_bar=False)
    assert resumed.embedded == 2  # only the last chunk was embedded again
    assert not (tmp_path / ".idx.partial").exists()
    fresh = build_index(corpus_path, tmp_path / "fresh", bi_encoder=BiEncoder(tiny_model_dir), chunk_size=2,
                        show_progress_bar=False)
    query = ["Berlin population"]
    assert index.dense_search(query, 6) == fresh.dense_search(query, 6)


def test_changed_corpus_discards_the_partial_build(tmp_path, corpus_path, tiny_model_dir):
    out = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt):
        build_index(corpus_path, out, bi_encoder=_CountingEncoder(tiny_model_dir, fail_after=1), chunk_size=2,
                    show_progress_bar=False)
    other = write_jsonl(tmp_path / "other.jsonl", DOCS[::-1])
    encoder = _CountingEncoder(tiny_model_dir)
    index = build_index(other, out, bi_encoder=encoder, chunk_size=2, show_progress_bar=False)
    assert encoder.embedded == len(DOCS)
    assert index.documents([0])[0].id == DOCS[-1]["_id"]


def test_hnsw_finds_the_same_nearest_neighbour(tmp_path, corpus_path, minilm_bi_encoder):
    index = build_index(corpus_path, tmp_path / "hnsw", bi_encoder=minilm_bi_encoder, index_type="hnsw",
                        show_progress_bar=False)
    assert index.manifest["index_type"] == "hnsw"
    hits = index.dense_search(["How many people live in the German capital?"], k=3)[0]
    assert index.documents([hits[0][0]])[0].id == "berlin"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "corpus is empty"),
        (b'{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', r":2: duplicate id 'a' \(first seen on line 1\)"),
        (b'{"_id": "a", "title": "t"}\n', ":1: missing field 'text'"),
        (b'{"text": "x"}\n', ":1: missing field '_id'"),
        (b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n', ":2: not valid UTF-8"),
        (b'{"_id": "a", "text": "ok"}\n\n{"_id": "b", "text": \n', ":3: invalid JSON"),
        (b'{"_id": "a", "text": "ok", "title": 5}\n', ":1: field 'title' must be a string"),
        (b'{"_id": "a", "text": "  "}\n', ":1: document 'a' has neither text nor title"),
    ],
)
def test_bad_corpus_lines_name_file_and_line(tmp_path, content, message, tiny_model_dir):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        read_corpus(path)
    assert str(path) in str(info.value)
    with pytest.raises(InputError):
        build_index(path, tmp_path / "idx", bi_encoder=BiEncoder(tiny_model_dir))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]  # nothing half-written


def test_integer_ids_and_missing_title_are_accepted(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": 7, "text": "seven"}])
    assert read_corpus(path)[0] == read_corpus(path)[0].__class__("7", "", "seven")


def test_vectors_saved_are_normalised(index_dir, minilm_bi_encoder):
    import faiss

    vectors = faiss.read_index(str(index_dir / DENSE_FILE)).reconstruct_n(0, len(DOCS))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert json.loads((index_dir / MANIFEST).read_text())["format_version"] == 1


def _overwrite(path, offset: int, data: bytes) -> None:
    """Damage a file in place without changing its size (only the skipped checksum would notice)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(
    ("part", "offset"),
    [(DOCS_FILE, 0), ("bm25/vocab.index.json", 0), ("bm25/params.index.json", 3), (DENSE_FILE, 0)],
)
def test_unreadable_parts_name_the_file_and_the_rebuild_command(tmp_path, index_dir, corpus_path, part, offset):
    damaged = tmp_path / "damaged"
    shutil.copytree(index_dir, damaged)
    _overwrite(damaged / part, offset, b"\xff" * 64 if part == DOCS_FILE else b"#")
    with pytest.raises(IndexFolderError) as info:
        Index.open(damaged, verify=False)
    message = str(info.value)
    assert message.startswith(f"{damaged / part}: unreadable") and len(message.splitlines()) == 1
    assert f"`crossencoder index {corpus_path} --out {damaged} --overwrite`" in message


def test_text_store_damaged_after_opening_is_an_index_error(tmp_path, index_dir):
    damaged = tmp_path / "damaged"
    shutil.copytree(index_dir, damaged)
    index = Index.open(damaged, verify=False)
    _overwrite(damaged / DOCS_FILE, 0, b"\xff" * 64)
    with pytest.raises(IndexFolderError, match=f"{DOCS_FILE}: unreadable .*--overwrite"):
        index.documents([0])
    with pytest.raises(IndexFolderError, match=f"{DOCS_FILE}: unreadable"):
        index.positions(["berlin"])


def test_corpus_without_bm25_terms_is_refused_before_embedding(tmp_path, tiny_model_dir):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "T"}, {"_id": "b", "title": "The", "text": "a"}])
    encoder = _CountingEncoder(tiny_model_dir)
    with pytest.raises(InputError, match=f"{corpus}: no document has a word BM25 can index"):
        build_index(corpus, tmp_path / "idx", bi_encoder=encoder, show_progress_bar=False)
    assert encoder.embedded == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]  # no .idx.partial left behind


def test_stdin_corpus_is_refused_up_front(tmp_path, tiny_model_dir, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(DOCS[0]) + "\n"))
    with pytest.raises(InputError, match="cannot be read from stdin"):
        build_index("-", tmp_path / "idx", bi_encoder=BiEncoder(tiny_model_dir), show_progress_bar=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", [
    lambda m: m.pop("count"),
    lambda m: m["files"][DENSE_FILE].pop("size"),
    lambda m: m.update(files=[DENSE_FILE]),
])
def test_manifest_missing_entries_is_a_corrupt_manifest(tmp_path, index_dir, damage):
    folder = tmp_path / "idx"
    shutil.copytree(index_dir, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    damage(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexFolderError, match=f"{folder / MANIFEST}: corrupt manifest"):
        Index.open(folder, verify=False)


def test_overwrite_replaces_only_an_index_folder(tmp_path, tiny_model_dir):
    # --overwrite on a mistyped --out, or on the folder that holds the corpus, must not delete the user's files.
    folder = tmp_path / "data"
    folder.mkdir()
    corpus = write_jsonl(folder / "corpus.jsonl", DOCS[:2])
    with pytest.raises(IndexFolderError, match=f"{folder} holds files that are not part of an index .*'corpus.jsonl'"):
        build_index(corpus, folder, bi_encoder=BiEncoder(tiny_model_dir), overwrite=True, show_progress_bar=False)
    assert sorted(p.name for p in folder.iterdir()) == ["corpus.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no embedding cache either


@pytest.mark.parametrize("kwargs", [{"chunk_size": 0}, {"batch_size": 0}, {"hnsw_m": 0, "index_type": "hnsw"}])
def test_non_positive_sizes_are_refused_up_front(tmp_path, corpus_path, tiny_model_dir, kwargs):
    with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be a positive integer"):
        build_index(corpus_path, tmp_path / "idx", bi_encoder=BiEncoder(tiny_model_dir), show_progress_bar=False,
                    **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_lone_surrogate_escape_is_a_corpus_error(tmp_path, tiny_model_dir):
    # JSON allows "\ud800" (half of a UTF-16 pair, e.g. a cut emoji); no tokenizer or SQLite can take it.
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "a", "text": "fine"}\n{"_id": "b", "title": "x", "text": "cut \\ud83d emoji"}\n')
    with pytest.raises(InputError, match=f"{path}:2: field 'text' is not valid Unicode"):
        build_index(path, tmp_path / "idx", bi_encoder=BiEncoder(tiny_model_dir), show_progress_bar=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]


def test_missing_query_encoder_names_the_index(tmp_path, corpus_path, tiny_model_dir):
    # The user named no model: the error must say it is the index's bi-encoder, and what still works.
    from crossencoder.errors import ModelNotFoundError

    encoder_dir = shutil.copytree(tiny_model_dir, tmp_path / "encoder")
    build_index(corpus_path, tmp_path / "idx", bi_encoder=BiEncoder(encoder_dir), show_progress_bar=False)
    shutil.rmtree(encoder_dir)
    index = Index.open(tmp_path / "idx")
    assert index.bm25_search(["Berlin population"], 1)[0]
    with pytest.raises(ModelNotFoundError, match=f"{tmp_path / 'idx'} was built with bi-encoder {str(encoder_dir)!r}, "
                                                 "which cannot be loaded.*does not exist.*bm25"):
        index.dense_search(["Berlin population"], 1)


def _replace_weights(folder, seed: int) -> None:
    """Put other weights of the same shape into a model folder, as re-training into the same path does."""
    from crossencoder.testing import make_tiny_cross_encoder

    shutil.rmtree(folder)
    make_tiny_cross_encoder(folder, seed=seed)


def test_changed_bi_encoder_discards_the_partial_build(tmp_path, corpus_path, tiny_model_dir):
    encoder_dir = shutil.copytree(tiny_model_dir, tmp_path / "encoder")
    with pytest.raises(KeyboardInterrupt):
        build_index(corpus_path, tmp_path / "idx", bi_encoder=_CountingEncoder(encoder_dir, fail_after=2),
                    chunk_size=2, show_progress_bar=False)
    _replace_weights(encoder_dir, seed=1)
    encoder = _CountingEncoder(encoder_dir)
    index = build_index(corpus_path, tmp_path / "idx", bi_encoder=encoder, chunk_size=2, show_progress_bar=False)
    assert encoder.embedded == len(DOCS)  # no vector of the old model is mixed in
    fresh = build_index(corpus_path, tmp_path / "fresh", bi_encoder=BiEncoder(encoder_dir), chunk_size=2,
                        show_progress_bar=False)
    assert index.dense_search(["Berlin population"], 6) == fresh.dense_search(["Berlin population"], 6)


def test_changed_bi_encoder_is_detected_at_search(tmp_path, corpus_path, tiny_model_dir):
    encoder_dir = shutil.copytree(tiny_model_dir, tmp_path / "encoder")
    build_index(corpus_path, tmp_path / "idx", bi_encoder=BiEncoder(encoder_dir), show_progress_bar=False)
    assert Index.open(tmp_path / "idx", bi_encoder=BiEncoder(tiny_model_dir)).count == len(DOCS)  # a copy is fine
    other = BiEncoder(_make_other(tmp_path / "other"))
    with pytest.raises(IndexFolderError, match="embeds texts differently from the bi-encoder the index was built"):
        Index.open(tmp_path / "idx", bi_encoder=other)
    _replace_weights(encoder_dir, seed=1)
    index = Index.open(tmp_path / "idx")
    assert index.bm25_search(["Berlin population"], 1)[0]  # BM25 needs no encoder
    with pytest.raises(IndexFolderError, match=f"{tmp_path / 'idx'}: the bi-encoder {str(encoder_dir)!r} embeds "
                                               "texts differently .*--overwrite"):
        index.dense_search(["Berlin population"], 1)


def _make_other(folder):
    from crossencoder.testing import make_tiny_cross_encoder

    return make_tiny_cross_encoder(folder, seed=2)


def test_query_encoder_loaded_from_the_manifest_runs_on_the_device_asked(index_dir, monkeypatch):
    from crossencoder.retrieval import index as index_module

    devices = []

    class RecordingBiEncoder(BiEncoder):
        def __init__(self, *args, **kwargs):
            devices.append(kwargs.get("device"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(index_module, "BiEncoder", RecordingBiEncoder)
    with Index.open(index_dir, device="cpu") as index:
        assert index.dense_search(["Berlin population"], 1)[0]
    assert devices == ["cpu"]


@pytest.mark.parametrize(("where", "out"), [(".", "."), ("idx/bm25", "..")])
def test_building_into_the_current_folder_is_refused_clearly(tmp_path, corpus_path, tiny_model_dir, monkeypatch,
                                                            where, out):
    # `mkdir idx && cd idx && crossencoder index ../corpus.jsonl --out .`: the swap into place would delete the
    # shell's folder (before, the build failed with "PosixPath('.') has an empty name").
    encoder = BiEncoder(tiny_model_dir)
    build_index(corpus_path, tmp_path / "idx", bi_encoder=encoder, show_progress_bar=False)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / ("empty" if where == "." else where))
    with pytest.raises(IndexFolderError, match="is the current folder or holds it.*--out (empty|idx)"):
        build_index(corpus_path, out, bi_encoder=encoder, overwrite=True, show_progress_bar=False)
    assert Index.open(tmp_path / "idx").count == len(DOCS)
