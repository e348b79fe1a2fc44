"""Activation functions applied to logits, and the sentence-transformers conventions for storing them."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from torch import nn

logger = logging.getLogger(__name__)

# Keys written by sentence-transformers: >= 4 in config.json, < 4 as a top-level config attribute.
ST_CONFIG_KEY = "sentence_transformers"
LEGACY_KEY = "sbert_ce_default_activation_function"


def fullname(obj: Any) -> str:
    """Dotted import path of an object's class, e.g. ``torch.nn.modules.activation.Sigmoid``."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def resolve_activation(path: str, trust_remote_code: bool = False) -> Callable | None:
    """Instantiate an activation from a dotted path stored in a model folder.

    Only ``torch.*`` classes are imported unless ``trust_remote_code`` is true: a config file must not be able to
    run arbitrary code. Returns None (and warns) for an untrusted or unknown path.
    """
    if not (trust_remote_code or path.startswith("torch.")):
        logger.warning(
            "Activation %r from the model config is not a torch.* path; using the default instead. "
            "Load with trust_remote_code=True to allow it.", path,
        )
        return None
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)()
    except (ImportError, AttributeError, TypeError) as exc:
        logger.warning("Could not import activation %r (%s); using the default instead.", path, exc)
        return None


def stored_activation_path(config: Any, st_config: dict[str, Any]) -> str | None:
    """The activation path a model folder declares, in sentence-transformers' order of precedence."""
    if st_config.get("activation_fn"):
        return st_config["activation_fn"]
    st = getattr(config, ST_CONFIG_KEY, None)
    if isinstance(st, dict) and st.get("activation_fn"):
        return st["activation_fn"]
    legacy = getattr(config, LEGACY_KEY, None)
    return legacy or None


def default_activation(num_labels: int) -> nn.Module:
    """sentence-transformers' default: Sigmoid for a single score, identity (raw logits) for classifiers."""
    return nn.Sigmoid() if num_labels == 1 else nn.Identity()
