"""Tiny corpus shared by the retrieval tests."""

from __future__ import annotations

import json
from pathlib import Path

DOCS = [
    {"_id": "berlin", "title": "Berlin", "text": "Berlin has a population of 3.5 million inhabitants."},
    {"_id": "paris", "title": "Paris", "text": "Paris is the capital and largest city of France."},
    {"_id": "cats", "title": "", "text": "Cats are small domesticated carnivorous mammals kept as pets."},
    {"_id": "python", "title": "Python", "text": "Python is a programming language that emphasises readability."},
    {"_id": "plants", "title": "", "text": "Photosynthesis lets plants turn sunlight, water and carbon dioxide "
                                           "into sugar."},
    {"_id": "coffee", "title": "Coffee", "text": "Coffee is brewed from roasted coffee beans."},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
