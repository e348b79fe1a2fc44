"""The top-level namespace: the core imported eagerly, the other layers only when used."""

import subprocess
import sys

import pytest

import crossencoder


def test_import_does_not_pull_optional_extras():
    code = ("import sys, crossencoder; heavy = {'ray', 'faiss', 'bm25s', 'fastapi', 'onnxruntime'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_names_resolve_to_their_layer():
    from crossencoder.retrieval import BiEncoder
    from crossencoder.training import Trainer

    assert crossencoder.Trainer is Trainer and crossencoder.BiEncoder is BiEncoder
    assert set(crossencoder.__all__) >= {"CrossEncoder", "Trainer", "BiEncoder", "score_dataset"}
    with pytest.raises(AttributeError, match="no_such_name"):
        crossencoder.no_such_name  # noqa: B018
