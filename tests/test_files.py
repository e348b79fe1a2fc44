"""Atomic writes (a failed write leaves the old content or nothing, never a partial file) and reading user files."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from crossencoder.files import (
    InputError,
    atomic_dir,
    drop_trailing_empty_cells,
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


def test_drop_trailing_empty_cells_keeps_the_columns_every_row_has():
    # The rule training data files (TSV/CSV) and qrels share: a trailing tab or comma adds no column.
    row = ["q", "d", "1", "", " \r"]
    assert drop_trailing_empty_cells(row, keep=3) == ["q", "d", "1"] and len(row) == 5
    assert drop_trailing_empty_cells(["q", "", "", "", ""], keep=3) == ["q", "", ""]
    assert drop_trailing_empty_cells(["q", "d", "", "x", ""], keep=3) == ["q", "d", "", "x"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_atomic_dir_removes_the_folder_a_killed_writer_left_but_never_a_live_ones(tmp_path):
    target = tmp_path / "best-model"
    # A writer killed mid-save (no finally runs) leaves its temporary folder behind.
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from crossencoder.files import atomic_dir
        with atomic_dir({str(target)!r}) as tmp:
            (tmp / "weights").write_text("partial")
            os.kill(os.getpid(), signal.SIGKILL)
        """)])
    assert killed.returncode == -signal.SIGKILL
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".best-model.tmp-") and (left / "weights").is_file()
    host, pid = left.name.split("-")[2:4]
    # The same writer on this host, still alive (this process); another host's; a name without an owner (older).
    live = tmp_path / f".best-model.tmp-{host}-{os.getpid()}-{'a' * 32}"
    remote = tmp_path / f".best-model.tmp-{'0' * 8 if host != '0' * 8 else '1' * 8}-{pid}-{'b' * 32}"
    ownerless = tmp_path / f".best-model.tmp-{'c' * 32}"
    other_target = tmp_path / f".best-model-2.tmp-{host}-{pid}-{'d' * 32}"
    for folder in (live, remote, ownerless, other_target):
        folder.mkdir()
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["best-model", live.name, remote.name, ownerless.name, other_target.name])


def test_atomic_writes_flush_to_disk_before_the_rename(tmp_path, monkeypatch):
    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name the synced files")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    with atomic_dir(tmp_path / "index") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "docs").write_text("x")
    write_text_atomic(tmp_path / "manifest.json", "{}")
    names = {os.path.basename(p) for p in synced}
    # Every file and folder of the new content, and the folder that holds the renamed result.
    assert {"docs", "sub", tmp_path.name} <= names
    assert any(n.startswith(".manifest.json.") for n in names)
