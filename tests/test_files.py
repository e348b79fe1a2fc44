"""Atomic writes (a failed write leaves the old content or nothing, never a partial file) and reading user files."""

import hashlib
import os

import pytest

from crossencoder.files import (
    InputError,
    atomic_dir,
    file_sha256,
    parse_json_line,
    pick_text,
    read_lines,
    recover_dir,
    write_atomic,
    write_text_atomic,
)


def test_write_atomic_leaves_old_file_and_no_temporary_on_failure(tmp_path):
    path = tmp_path / "manifest.json"
    write_text_atomic(path, "v1")

    def crash(tmp):
        tmp.write_text("v2-partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(path, crash)
    assert path.read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_file_sha256_matches_hashlib_across_blocks(tmp_path):
    data = bytes(range(256)) * 5000  # > 1 MiB: several read blocks
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_atomic_dir_keeps_old_content_on_failure_and_recovers_a_half_swap(tmp_path):
    target = tmp_path / "best-model"
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("v2-partial")
            raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-model"]  # no temporary folder left
    # A kill between the two renames leaves only "<target>.old": the next writer restores it first.
    target.rename(tmp_path / "best-model.old")
    recover_dir(target)
    assert (target / "weights").read_text() == "v1"


def test_atomic_dir_follows_the_umask_like_a_plain_folder(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "index") as tmp:
            (tmp / "docs").write_text("x")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    # Others can read an index or model folder, as with any folder they would make themselves (was 0700).
    assert (tmp_path / "index").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o755


def test_read_lines_names_a_folder_and_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="is a folder, not a file"):
        list(read_lines(str(tmp_path)))
    with pytest.raises(InputError, match="nope.txt: no such file"):
        list(read_lines(str(tmp_path / "nope.txt")))


def test_pick_text_refuses_a_lone_surrogate_naming_file_line_and_field():
    # JSON may escape half of a UTF-16 pair (a cut emoji): valid JSON, not text a tokenizer takes.
    obj = parse_json_line("p.jsonl", 3, '{"text": "cut \\ud83d emoji"}')
    with pytest.raises(InputError, match=r"p.jsonl:3: field 'text' is not valid Unicode: it holds a lone surrogate"):
        pick_text(obj, ("text",), "p.jsonl", 3)
    assert pick_text({"text": "caf\u00e9 \U0001f600"}, ("text",), "p.jsonl", 3) == "caf\u00e9 \U0001f600"
