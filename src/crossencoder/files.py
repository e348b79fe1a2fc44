"""Reading user files with errors that name file and line; writing files that are complete or absent.

Every artefact crossencoder writes (trained models, checkpoints, indexes, ONNX exports, job outputs) goes through
the atomic writers here, so a kill or a full disk never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from crossencoder.errors import CrossEncoderError


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's content to the disk, so a rename that follows survives a power loss or crash.

    Skipped where the platform refuses (Windows cannot open a folder for it).
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename the result to ``path``, so ``path`` is complete or absent.

    The temporary name is unique per call, so a restarted worker never collides with a dead one's leftovers. The
    file is flushed to the disk before the rename, so a crash right after it cannot leave an empty ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@functools.cache
def _host_tag() -> str:
    """A short, filename-safe tag of this machine and process-id namespace: a temporary folder's pid means something
    only there (a shared file system may hold folders of writers on other hosts, or in other containers)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # Linux: "pid:[4026531836]"
    except OSError:
        namespace = ""
    return f"{zlib.crc32((socket.gethostname() + namespace).encode('utf-8', 'surrogateescape')):08x}"


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one of another user counts as alive; on Windows every
    one does, as ``os.kill(pid, 0)`` there sends a Ctrl-C instead of probing)."""
    if pid <= 0 or os.name == "nt":
        return True  # not a real owner, or no harmless probe: never treat it as dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. PermissionError: it exists, owned by someone else
    return True


def _remove_abandoned_temps(target: Path) -> None:
    """Delete the temporary siblings ``.<target>.tmp-<host>-<pid>-<uuid>`` that :func:`atomic_dir` left when its
    process was killed (SIGKILL, power loss: no ``finally`` ran).

    Only folders made on this host (and process-id namespace) by a process that no longer exists are removed:
    another live writer's folder, one from another host or container, and names without an owner are left alone.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.tmp-(?P<host>[0-9a-f]{{8}})-(?P<pid>\d+)-[0-9a-f]{{32}}")
    host = _host_tag()
    for entry in target.parent.glob(f".{glob.escape(target.name)}.tmp-*"):
        match = pattern.fullmatch(entry.name)
        if match and match["host"] == host and not _pid_alive(int(match["pid"])) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Write a folder atomically: yield a temporary sibling folder, then swap it into place.

    A failure inside the block (or a kill) leaves ``target`` as it was: the new content only appears once it is
    complete, and is flushed to the disk before it does. When ``target`` already exists it is moved aside to
    ``<target>.old`` for the instant between two renames; :func:`recover_dir` puts it back if the process died
    right there. The temporary folder is named ``.<target>.tmp-<host>-<pid>-<uuid>``: one that a killed writer
    left behind is deleted by the next write to the same ``target``, while a live writer's is never touched.

    Example:
        >>> with atomic_dir("out/best-model") as tmp:
        ...     model.save(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    _remove_abandoned_temps(target)
    # Not mkdtemp: its 0700 mode would outlive the rename; a plain mkdir follows the umask like any other folder.
    tmp = target.parent / f".{target.name}.tmp-{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for folder, _, names in os.walk(tmp):
        for name in names:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))
    old = target.with_name(target.name + ".old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: str | os.PathLike) -> None:
    """Undo a swap that :func:`atomic_dir` did not finish: restore ``<target>.old`` if ``target`` is missing."""
    target = Path(target)
    old = target.with_name(target.name + ".old")
    if old.exists() and not target.exists():
        os.replace(old, target)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InputError(CrossEncoderError, ValueError):
    """A bad input file or line; the message names the file and line."""


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file (``"<path>: is a folder, not a file."``), or None when it is one."""
    path = Path(path)
    if path.is_file():
        return None
    return f"{path}: is a folder, not a file." if path.is_dir() else f"{path}: no such file."


def _open_binary(path: str) -> IO:
    if path == "-":
        # Tests (and some embedders) replace stdin with a text stream that has no byte buffer.
        return getattr(sys.stdin, "buffer", sys.stdin)
    problem = not_a_file(path)
    if problem:
        raise InputError(problem)
    return open(path, "rb")


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a UTF-8 file (``-`` = stdin).

    Lines are decoded one by one so a decoding error names the right line.

    Raises:
        InputError: the file does not exist or a line is not valid UTF-8.
    """
    stream = _open_binary(path)
    name = "<stdin>" if path == "-" else path
    try:
        for lineno, raw in enumerate(stream, start=1):
            if isinstance(raw, bytes):
                try:
                    raw = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(f"{name}:{lineno}: not valid UTF-8 ({exc.reason}).") from None
            line = raw.rstrip("\r\n").lstrip("\ufeff") if lineno == 1 else raw.rstrip("\r\n")
            if line.strip():
                yield lineno, line
    finally:
        if path != "-":
            stream.close()


def drop_trailing_empty_cells(row: list[str], keep: int) -> list[str]:
    """``row`` without the empty (or blank) cells at its end past its first ``keep``: a trailing tab or comma, as
    spreadsheets write ragged rows, adds no column.

    Args:
        row: The cells of one table row.
        keep: How many cells are never dropped (the columns every row has).

    Returns:
        The row up to its last non-blank cell, or its first ``keep`` cells when shorter.
    """
    end = len(row)
    while end > keep and not row[end - 1].strip():
        end -= 1
    return row[:end]


def parse_json_line(name: str, lineno: int, line: str) -> dict[str, Any]:
    """Parse one JSONL line that must hold an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}:{lineno}: invalid JSON ({exc.msg}).") from None
    if not isinstance(obj, dict):
        raise InputError(f"{name}:{lineno}: expected a JSON object, got {type(obj).__name__}.")
    return obj


# Lone surrogates ("\ud83d": half a UTF-16 pair, as JSON may escape a cut emoji, or bytes decoded with
# errors="surrogateescape") are not valid Unicode: tokenizers and SQLite fail on them, naming neither text nor problem.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def unicode_defect(text: str) -> str | None:
    """``"not valid Unicode: it holds a lone surrogate '\\ud800'"`` when ``text`` is not valid Unicode, else None."""
    if text.isascii():  # O(1) in CPython: ASCII texts are not scanned
        return None
    surrogate = _LONE_SURROGATE.search(text)
    return f"not valid Unicode: it holds a lone surrogate {surrogate.group()!a}" if surrogate else None


def unicode_problem(text: str, name: str) -> str | None:
    """Why ``text`` (called ``name`` in the message) is not valid Unicode, or None when it is."""
    defect = unicode_defect(text)
    return f"{name} is {defect}" if defect else None


def checked_text(value: str, key: str, name: str, lineno: int) -> str:
    """``value`` of field ``key`` at ``name:lineno``, refused with an :class:`InputError` when not valid Unicode."""
    if problem := unicode_problem(value, f"{name}:{lineno}: field {key!r}"):
        raise InputError(problem + ".")
    return value


def pick_text(obj: dict[str, Any], keys: tuple[str, ...], name: str, lineno: int) -> str:
    """The first of ``keys`` present in a JSON object, which must be a (valid Unicode) string."""
    for key in keys:
        if key in obj:
            value = obj[key]
            if not isinstance(value, str):
                raise InputError(f"{name}:{lineno}: field {key!r} must be a string, got {type(value).__name__}.")
            return checked_text(value, key, name, lineno)
    raise InputError(f"{name}:{lineno}: missing field, expected one of {', '.join(repr(k) for k in keys)}.")
