"""The top-level namespace: light to import, every heavy layer (torch included) imported only when used."""

import subprocess
import sys

import pytest

import crossencoder


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_does_not_pull_optional_extras():
    code = ("import sys, crossencoder; heavy = {'ray', 'faiss', 'bm25s', 'fastapi', 'onnxruntime', 'onnx', 'scipy', "
            "'sklearn', 'pyarrow', 'uvicorn', 'ranx'}; print(sorted(heavy & set(sys.modules)))")
    assert _run(code) == "[]"


def test_import_does_not_pull_torch_or_transformers():
    # `import crossencoder` (and so every `crossencoder --help`) took seconds when it imported torch eagerly.
    code = "import sys, crossencoder; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    assert _run(code) == "[]"


def test_lazy_names_resolve_to_their_layer():
    from crossencoder.model import CrossEncoder
    from crossencoder.retrieval import BiEncoder
    from crossencoder.training import Trainer

    assert crossencoder.CrossEncoder is CrossEncoder
    assert crossencoder.Trainer is Trainer and crossencoder.BiEncoder is BiEncoder
    assert set(crossencoder.__all__) >= {"CrossEncoder", "Trainer", "BiEncoder", "score_dataset", "MissingExtraError"}
    assert set(crossencoder.__all__) <= set(dir(crossencoder))
    with pytest.raises(AttributeError, match="no_such_name"):
        crossencoder.no_such_name  # noqa: B018


def test_names_of_a_missing_extra_still_import_and_say_what_to_install():
    # Without the ray extra, `from crossencoder import *` (and hasattr, help()) raised RayNotInstalledError; the
    # names now resolve to stand-ins that raise it, with the install hint, when called.
    code = """
import sys
sys.modules['pyarrow'] = None  # the ray extra is not installed
sys.modules['ray'] = None
from crossencoder import *
import crossencoder
assert hasattr(crossencoder, 'score_dataset') and hasattr(crossencoder, 'rank_dataset')
try:
    score_dataset('model', 'in.jsonl', 'out/')
except ImportError as exc:
    print(type(exc).__name__, exc)
"""
    out = _run(code)
    assert out.startswith("RayNotInstalledError") and "pip install 'crossencoder[ray]'" in out


def test_a_missing_extra_module_gets_the_extra_named(monkeypatch):
    import importlib

    real_import_module = importlib.import_module

    def import_module(name, *args):
        if name == "crossencoder.retrieval":
            raise ModuleNotFoundError("No module named 'faiss'", name="faiss")
        return real_import_module(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.delitem(crossencoder.__dict__, "build_index", raising=False)
    stand_in = crossencoder.build_index
    with pytest.raises(crossencoder.MissingExtraError, match=r"pip install 'crossencoder\[retrieval\]'"):
        stand_in("corpus.jsonl", "index")


def test_an_unrelated_import_error_is_not_hidden(monkeypatch):
    import importlib

    def import_module(name, *args):
        raise ModuleNotFoundError("No module named 'numpy'", name="numpy")  # a broken install, not an extra

    monkeypatch.setattr(importlib, "import_module", import_module)
    monkeypatch.delitem(crossencoder.__dict__, "search", raising=False)
    with pytest.raises(ModuleNotFoundError, match="numpy"):
        crossencoder.search  # noqa: B018
