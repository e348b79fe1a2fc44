"""Resolve and load model folders: local paths, catalog short names and Hub ids (cache, revision, offline)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hub_constants
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

from crossencoder.catalog import resolve_name
from crossencoder.errors import ModelNotFoundError

logger = logging.getLogger(__name__)


def _looks_like_path(name: str) -> bool:
    # A Hub id is "name" or "org/name"; anything with more parts, a leading dot/slash/tilde is meant as a path.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def resolve_model(model_name_or_path: str | os.PathLike) -> str:
    """Return what transformers should load: an existing local folder or a Hub id.

    Catalog short names (``ms-marco-MiniLM-L6-v2``) map to their Hub id. A path-like name that does not exist raises.

    Raises:
        ModelNotFoundError: the name looks like a local path and there is no folder there.
    """
    name = os.fspath(model_name_or_path)
    if not isinstance(name, str) or not name.strip():
        raise ModelNotFoundError("The model name is empty: pass a local folder or a Hugging Face Hub id.")
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return expanded
    if _looks_like_path(name):
        raise ModelNotFoundError(f"Model folder {name!r} does not exist.")
    return resolve_name(name)


def _hub_failure(name: str, revision: str | None, cache_folder: str | None, exc: BaseException) -> ModelNotFoundError:
    offline = hub_constants.HF_HUB_OFFLINE
    tried = f"a local folder named {name!r} (none), the Hub cache ({cache_folder or hub_constants.HF_HUB_CACHE})"
    tried += ", and not the Hub (offline mode: HF_HUB_OFFLINE=1)" if offline else ", and the Hugging Face Hub"
    rev = f" at revision {revision!r}" if revision else ""
    cause = str(exc).splitlines()[0].rstrip(". ") if str(exc) else "no message"
    return ModelNotFoundError(
        f"Could not load model {name!r}{rev}: tried {tried}. Cause: {type(exc).__name__}: {cause}. "
        "Fix: pass the path of a local model folder, or download it once with network access "
        f"(`hf download {name}`) so it is in the cache."
    )


def load_config(
    source: str,
    hub_kwargs: dict[str, Any],
    config_kwargs: dict[str, Any] | None = None,
) -> PretrainedConfig:
    """Load the transformers config, turning 'not found / unreachable' into one readable error."""
    try:
        return AutoConfig.from_pretrained(source, **hub_kwargs, **(config_kwargs or {}))
    except (OSError, ValueError) as exc:
        if os.path.isdir(source):
            raise ModelNotFoundError(f"{source!r} is not a transformers model folder: {exc}") from exc
        raise _hub_failure(source, hub_kwargs.get("revision"), hub_kwargs.get("cache_dir"), exc) from exc


def load_tokenizer(
    source: str, hub_kwargs: dict[str, Any], tokenizer_kwargs: dict[str, Any] | None = None
) -> PreTrainedTokenizerBase:
    """Load the (fast) tokenizer of a model folder or Hub id.

    Raises:
        ModelNotFoundError: it cannot be found, or the source has no tokenizer files (transformers would then
            build a tokenizer of special tokens only, which reads every word as ``[UNK]``).
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs, **(tokenizer_kwargs or {}))
    except (OSError, ValueError) as exc:
        raise _hub_failure(source, hub_kwargs.get("revision"), hub_kwargs.get("cache_dir"), exc) from exc
    if len(tokenizer) <= len(tokenizer.all_special_tokens):
        raise ModelNotFoundError(
            f"{source!r} has no tokenizer files (tokenizer.json, vocab.txt, ...): its tokenizer holds only "
            f"{len(tokenizer)} special tokens. Copy the tokenizer files of its base model into the folder."
        )
    return tokenizer


def _folder_file(source: str, filename: str, hub_kwargs: dict[str, Any]) -> Path | None:
    """``filename`` of a local folder or of a Hub id (downloaded to the cache, as transformers does for the
    model's own files); None when the model has no such file, or offline when the cache lacks it."""
    if os.path.isdir(source):
        path = Path(source) / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    # huggingface_hub.errors exists only from 0.25; utils exports both names from 0.23 on (and still does).
    from huggingface_hub.utils import EntryNotFoundError, HfHubHTTPError

    try:
        return Path(hf_hub_download(
            source, filename, revision=hub_kwargs.get("revision"), cache_dir=hub_kwargs.get("cache_dir"),
            local_files_only=bool(hub_kwargs.get("local_files_only")), token=hub_kwargs.get("token"),
        ))
    except EntryNotFoundError:  # not in the repository (or, offline, not in the cache)
        return None
    except (HfHubHTTPError, OSError) as exc:
        # The model itself loaded: a failure on an optional settings file should not stop it, but must be seen.
        logger.warning("Could not read %s of %r (%s: %s); the sentence-transformers settings it may hold "
                       "(activation, prompts) are not applied.", filename, source, type(exc).__name__,
                       str(exc).splitlines()[0] if str(exc) else "no message")
        return None


def read_sentence_transformers_config(source: str, hub_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Read ``config_sentence_transformers.json`` (sentence-transformers >= 6 stores the activation there), if any."""
    path = _folder_file(source, "config_sentence_transformers.json", hub_kwargs)
    if path is None:
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def is_sentence_transformers_cross_encoder(
    source: str, hub_kwargs: dict[str, Any], st_config: dict[str, Any]
) -> bool:
    """Whether sentence-transformers' ``CrossEncoder`` loads the model as one of its own saves, the only case in
    which it applies the ``prompts`` and ``default_prompt_name`` of ``config_sentence_transformers.json``.

    That takes a ``modules.json`` and ``model_type == "CrossEncoder"`` in that config (a missing key means
    ``"SentenceTransformer"``); any other save, a bi-encoder's included, it converts and ignores the settings of.

    Args:
        source: Local folder or Hub id.
        hub_kwargs: Revision, cache folder, token and offline flag for a Hub id.
        st_config: The model's ``config_sentence_transformers.json`` (``{}`` when it has none).

    Returns:
        True for a sentence-transformers cross-encoder save; ``modules.json`` is fetched only when the config
        says ``CrossEncoder``.
    """
    if st_config.get("model_type", "SentenceTransformer") != "CrossEncoder":
        return False
    return _folder_file(source, "modules.json", hub_kwargs) is not None
