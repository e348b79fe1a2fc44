"""Atomic folder writes and trainer checkpoints (model, optimizer, scheduler, RNG, step) that survive a kill."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

STATE_FILE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


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


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``output_dir`` (those with a state file), oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def _rng_state() -> dict[str, Any]:
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, list(mt), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    state: dict[str, Any],
) -> None:
    """Write a resumable checkpoint folder atomically (weights as safetensors, the rest as torch tensors / JSON)."""
    with atomic_dir(path) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng_state.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        # The state file goes last: list_checkpoints() only trusts folders that have it.
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into the given objects; return the trainer state dict."""
    path = Path(path)
    device = next(model.parameters()).device
    load_model(model, str(path / "model.safetensors"), device=str(device))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    if scaler is not None and (path / "scaler.pt").is_file():
        scaler.load_state_dict(torch.load(path / "scaler.pt", weights_only=True))
    _set_rng_state(torch.load(path / "rng_state.pt", weights_only=True))
    return json.loads((path / STATE_FILE).read_text())
