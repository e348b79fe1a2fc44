"""Files that are complete or absent: atomic file and folder writes, and checksums.

Every artefact crossencoder writes (trained models, checkpoints, indexes, ONNX exports, job outputs) goes through
here, so a kill or a full disk never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` then rename the result to ``path``, so ``path`` is complete or absent.

    The temporary name is unique per call, so a restarted worker never collides with a dead one's leftovers.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Write a folder atomically: yield a temporary sibling folder, then swap it into place.

    A failure inside the block (or a kill) leaves ``target`` as it was: the new content only appears once it is
    complete. When ``target`` already exists it is moved aside to ``<target>.old`` for the instant between two
    renames; :func:`recover_dir` puts it back if the process died right there.

    Example:
        >>> with atomic_dir("out/best-model") as tmp:
        ...     model.save(tmp)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(target.name + ".old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
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
