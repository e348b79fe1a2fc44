"""Trainer checkpoints (model, optimizer, scheduler, RNG, step) that survive a kill."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from crossencoder.errors import CrossEncoderError
from crossencoder.files import atomic_dir

STATE_FILE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(CrossEncoderError, ValueError):
    """A checkpoint file is missing, truncated, corrupt or not this run's; the message names the file."""


_MISFIT = "does not fit this model and optimizer"


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


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The trainer state (step, fingerprint, history...) of a checkpoint folder.

    Raises:
        CheckpointError: the state file is missing or not valid JSON.
    """
    file = Path(path) / STATE_FILE
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _unreadable(file, exc) from None


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote into the given objects; return the trainer state dict.

    Every other file is read and restored before the weights, which load all at once, so a checkpoint that cannot
    be restored leaves the model's weights as they were (the optimizer and scheduler may be half restored: the
    trainer creates fresh ones for each run, and a fallback checkpoint overwrites them).

    Raises:
        CheckpointError: a file of the checkpoint is missing, truncated or corrupt, or holds state that does not
            fit ``model`` / ``optimizer``; the message names the file.
    """
    path = Path(path)
    device = next(model.parameters()).device
    state = read_state(path)
    files = ["optimizer.pt", "scheduler.pt", "rng_state.pt"]
    if scaler is not None and (path / "scaler.pt").is_file():
        files.append("scaler.pt")
    loaded = {name: _torch_load(path / name, device) for name in files}
    for name, target in (("optimizer.pt", optimizer), ("scheduler.pt", scheduler), ("scaler.pt", scaler)):
        if name in loaded:
            try:
                target.load_state_dict(loaded[name])
            except (KeyError, ValueError, RuntimeError) as exc:  # readable, but not this run's kind of state
                raise _unreadable(path / name, exc, _MISFIT) from None
    weights = path / "model.safetensors"
    try:
        # load_model reads the whole file before assigning any tensor, so a truncated file changes nothing.
        load_model(model, str(weights), device=str(device))
    except (OSError, SafetensorError) as exc:
        raise _unreadable(weights, exc) from None
    except RuntimeError as exc:  # missing or unexpected tensors: another architecture
        raise _unreadable(weights, exc, _MISFIT) from None
    _set_rng_state(loaded["rng_state.pt"])
    return state


def load_model_folder(model: torch.nn.Module, folder: str | os.PathLike) -> None:
    """Load the weights of a saved model folder (``model.save``) into ``model``, in place, on its device.

    The folder may hold one ``model.safetensors`` or shards listed in ``model.safetensors.index.json`` (what
    ``save_pretrained`` writes for a model over its ``max_shard_size``). Shards load one at a time, so memory holds
    one shard beyond the model. Tied weights saved under one name count as loaded. A shard that fails to load after
    others did leaves the model partly updated.

    Raises:
        CheckpointError: the folder holds no safetensors weights, a file is truncated or corrupt, or the weights do
            not fit ``model``; the message names the file.
    """
    folder = Path(folder)
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = [folder / name for name in dict.fromkeys(weight_map.values())]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _unreadable(index, exc) from None
    else:
        raise CheckpointError(f"{folder}: no model.safetensors or model.safetensors.index.json to load weights from.")
    device = str(next(model.parameters()).device)
    missing: set[str] | None = None
    unexpected: set[str] = set()
    for file in files:
        try:
            # Not strict: each shard holds some of the tensors; what no shard held is missing in every one.
            shard_missing, shard_unexpected = load_model(model, str(file), strict=False, device=device)
        except (OSError, SafetensorError) as exc:
            raise _unreadable(file, exc) from None
        except RuntimeError as exc:  # a tensor of another shape: another architecture
            raise _unreadable(file, exc, _MISFIT) from None
        missing = set(shard_missing) if missing is None else missing & set(shard_missing)
        unexpected |= set(shard_unexpected)
    if missing or unexpected:
        names = ", ".join(sorted(missing or unexpected)[:5])
        raise CheckpointError(f"{folder}: the saved weights {_MISFIT} ({'missing' if missing else 'unexpected'} "
                              f"tensors {names}).")


def _torch_load(file: Path, device: torch.device) -> Any:
    """``torch.load`` of a checkpoint file with an error that names it."""
    try:
        return torch.load(file, map_location=device if file.name == "optimizer.pt" else "cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise _unreadable(file, exc) from None


def _unreadable(file: Path, exc: BaseException, problem: str = "is truncated or corrupt") -> CheckpointError:
    """The error for a checkpoint file that cannot be restored: the file, the problem and the first line of why."""
    if isinstance(exc, FileNotFoundError):
        return CheckpointError(f"{file}: this checkpoint file is missing.")
    # The first sentence only: torch explains at length, and the CLI prints one line.
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0].rstrip(".")
    return CheckpointError(f"{file}: this checkpoint file {problem} ({reason}).")
