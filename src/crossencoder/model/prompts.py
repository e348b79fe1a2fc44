"""Prompts, as sentence-transformers (>= 6) applies them: a named text prepended to the first text of every pair."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from crossencoder.files import unicode_problem

logger = logging.getLogger(__name__)

# What sentence-transformers writes beside config_sentence_transformers.json: without modules.json it does not read
# that file's prompts. One module, the folder itself, a sequence classifier whose logits are the scores.
MODULES_JSON: list[dict[str, Any]] = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
]
SENTENCE_BERT_CONFIG: dict[str, Any] = {
    "transformer_task": "sequence-classification",
    "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
    "module_output_name": "scores",
}


def checked_prompt_text(value: Any, name: str) -> str:
    """``value`` (a prompt, its name or a key, called ``name`` in messages) when it is a valid Unicode str.

    Raises:
        TypeError: ``value`` is not a str.
        ValueError: it holds a lone surrogate.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}.")
    if problem := unicode_problem(value, name):
        raise ValueError(problem + ".")
    return value


def _known(prompts: Mapping[str, str]) -> str:
    if not prompts:
        return "this model has no prompts (set them with CrossEncoder(..., prompts={name: text}))"
    return "the known names are " + ", ".join(repr(name) for name in prompts)


def merge_prompts(
    prompts: Mapping[str, str] | None,
    default_prompt_name: str | None,
    folder_config: Mapping[str, Any],
) -> tuple[dict[str, str], str | None]:
    """The prompts and default prompt name of a model, as sentence-transformers merges them.

    The caller's prompts win over the folder's of the same name; the caller's ``default_prompt_name`` wins over
    the folder's when it is not None.

    Args:
        prompts: ``CrossEncoder(prompts=...)``: name -> text.
        default_prompt_name: ``CrossEncoder(default_prompt_name=...)``.
        folder_config: The folder's ``config_sentence_transformers.json`` when sentence-transformers reads it (a
            cross-encoder save of its own: ``modules.json`` and ``model_type`` ``"CrossEncoder"``), else ``{}``.

    Returns:
        ``(prompts, default_prompt_name)``.

    Raises:
        TypeError: ``prompts`` is not a dict of str to str, or ``default_prompt_name`` not a str.
        ValueError: ``default_prompt_name`` (the caller's or the folder's) is not one of the prompts.
    """
    if prompts is not None and not isinstance(prompts, Mapping):
        raise TypeError(f"prompts must be a dict of prompt name to prompt text, got {type(prompts).__name__}.")
    merged = {checked_prompt_text(k, "prompts key"): checked_prompt_text(v, f"prompts[{k!r}]")
              for k, v in (prompts or {}).items()}
    saved = folder_config.get("prompts") or {}
    if isinstance(saved, Mapping):
        for name, text in saved.items():
            if isinstance(name, str) and isinstance(text, str):
                merged.setdefault(name, text)
    if default_prompt_name is None:
        default_prompt_name = folder_config.get("default_prompt_name")
        source = "the model folder's config_sentence_transformers.json"
    else:
        checked_prompt_text(default_prompt_name, "default_prompt_name")
        source = "CrossEncoder(default_prompt_name=...)"
    if default_prompt_name is not None and default_prompt_name not in merged:
        raise ValueError(f"default_prompt_name={default_prompt_name!r} (from {source}) is not one of the prompts: "
                         f"{_known(merged)}.")
    return merged, default_prompt_name


def resolve_prompt(
    prompts: Mapping[str, str], default_prompt_name: str | None, prompt: str | None, prompt_name: str | None
) -> str:
    """The text to prepend for one call: ``prompt`` if given, else the prompt named ``prompt_name``, else the
    default prompt, else none (``""``). An explicit ``prompt=""`` turns the default prompt off.

    Raises:
        TypeError: ``prompt`` or ``prompt_name`` is not a str.
        ValueError: ``prompt_name`` (or the model's ``default_prompt_name``) is not one of the prompts.
    """
    if prompt is not None:
        if prompt_name is not None:
            # sentence-transformers' behaviour: the explicit text wins.
            logger.warning("Both prompt and prompt_name were given; using prompt and ignoring prompt_name=%r.",
                           prompt_name)
        return checked_prompt_text(prompt, "prompt")
    name, argument = (prompt_name, "prompt_name") if prompt_name is not None else (default_prompt_name,
                                                                                    "default_prompt_name")
    if name is None:
        return ""
    checked_prompt_text(name, argument)
    if name not in prompts:
        raise ValueError(f"{argument}={name!r} is not one of this model's prompts: {_known(prompts)}.")
    return prompts[name]


def with_prompt(pairs: Sequence[tuple[str, str]], prompt: str) -> Sequence[tuple[str, str]]:
    """``pairs`` with ``prompt`` prepended to the first text of each (the query, in ``rank``)."""
    return [(prompt + a, b) for a, b in pairs] if prompt else pairs
