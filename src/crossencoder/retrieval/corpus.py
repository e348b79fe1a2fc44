"""Read BEIR-style JSONL corpora (``_id``, ``title``, ``text``) with errors that name the file and line."""

from __future__ import annotations

import os
from dataclasses import dataclass

from crossencoder.files import InputError, checked_text, parse_json_line, read_lines


def join_title(title: str, text: str) -> str:
    """What retrieval and re-ranking read: ``title`` and ``text`` joined (just ``text`` without a title)."""
    return f"{title} {text}" if title else text


@dataclass(frozen=True)
class Document:
    """One corpus passage."""

    id: str
    title: str
    text: str

    @property
    def content(self) -> str:
        """Title and text as one string (see :func:`join_title`)."""
        return join_title(self.title, self.text)


def read_id(obj: dict, name: str, lineno: int) -> str:
    """The id of a JSONL object (corpus or queries) as a string (an integer as its decimal text).

    Args:
        obj: The object of line ``lineno`` of file ``name``.
        name: The file, for messages.
        lineno: The line, for messages.

    Returns:
        Its ``_id`` field (BEIR's name), or its ``id`` field when it has no ``_id``.

    Raises:
        InputError: neither field is there, or the id is not a non-empty string or an integer, or not valid Unicode.
    """
    key = "id" if "id" in obj and "_id" not in obj else "_id"
    if key not in obj:
        raise InputError(f"{name}:{lineno}: missing field {key!r}.")
    value = obj[key]
    # BEIR ids are strings; integer ids (common in hand-made files) are accepted as their decimal text.
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise InputError(f"{name}:{lineno}: field {key!r} must be a non-empty string, got {value!r}.")
    return checked_text(str(value), key, name, lineno)


def _optional_text(obj: dict, key: str, name: str, lineno: int) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{name}:{lineno}: field {key!r} must be a string, got {type(value).__name__}.")
    return checked_text(value, key, name, lineno)


def read_corpus(path: str | os.PathLike) -> list[Document]:
    """Read a JSONL corpus: one object a line with ``_id`` (or ``id``), ``text`` and optional ``title``.

    Args:
        path: The corpus file (UTF-8 JSONL; blank lines are skipped).

    Returns:
        The documents in file order.

    Raises:
        InputError: the file is missing or empty, a line is not UTF-8 or not a JSON object, a field is missing or
            of the wrong type, or an id repeats (the message names the file and line).

    Example:
        >>> read_corpus("corpus.jsonl")[0]
        Document(id='d1', title='Berlin', text='Berlin has 3.5 million inhabitants.')
    """
    name = os.fspath(path)
    documents: list[Document] = []
    seen: dict[str, int] = {}
    for lineno, line in read_lines(name):
        obj = parse_json_line(name, lineno, line)
        doc_id = read_id(obj, name, lineno)
        if "text" not in obj:
            raise InputError(f"{name}:{lineno}: missing field 'text'.")
        text = _optional_text(obj, "text", name, lineno)
        title = _optional_text(obj, "title", name, lineno)
        if not (text.strip() or title.strip()):
            raise InputError(f"{name}:{lineno}: document {doc_id!r} has neither text nor title.")
        if doc_id in seen:
            raise InputError(f"{name}:{lineno}: duplicate id {doc_id!r} (first seen on line {seen[doc_id]}).")
        seen[doc_id] = lineno
        documents.append(Document(doc_id, title, text))
    if not documents:
        raise InputError(f"{name}: the corpus is empty.")
    return documents
