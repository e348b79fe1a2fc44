"""`crossencoder bench`: one row per backend with sane numbers, JSON output, one-line errors."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from crossencoder.cli.bench import synthetic_passages
from crossencoder.cli.main import main

FAST = ["--pairs", "8", "--rank-docs", "4", "--repeats", "1", "--doc-tokens", "24", "--threads", "1"]


@pytest.fixture()
def model_dir(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "tiny")


def test_bench_json_rows_for_each_backend(model_dir, capsys):
    pytest.importorskip("onnxruntime")
    code = main(["bench", "-m", str(model_dir), "--backends", "torch,onnx-int8", "--json", *FAST])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["backend"] for r in rows] == ["torch", "onnx-int8"]
    for row in rows:
        assert row["pairs_per_s"] > 0 and row["rank_p95_ms"] >= row["rank_p50_ms"] > 0
        assert row["rank_docs"] == 4 and row["threads"] == 1 and row["device"] == "cpu"
    # The int8 export went beside the model folder.
    assert list((model_dir / "onnx").glob("crossencoder-*/model.onnx"))


def test_bench_table_has_a_ratio_column_relative_to_first_backend(model_dir, capsys):
    code = main(["bench", "-m", str(model_dir), "--backends", "torch", *FAST])
    out, _ = capsys.readouterr()
    assert code == 0
    header, row, footer = out.splitlines()
    assert header.split()[:4] == ["backend", "load", "s", "pairs/s"] and "x torch" in header
    assert row.split()[0] == "torch" and row.split()[3] == "1.00"
    assert "8 pairs per run" in footer


def test_bench_table_names_each_device_when_backends_differ(model_dir, capsys, monkeypatch):
    """torch on a GPU next to onnx on the CPU (no onnxruntime-gpu): the footer must not claim one device for both."""
    from crossencoder.cli import bench

    def fake_row(name, args, passages):
        return {"backend": name, "device": "cuda" if name == "torch" else "cpu", "threads": 1, "load_s": 1.0,
                "pairs_per_s": 100.0, "rank_docs": 4, "rank_p50_ms": 5.0, "rank_p95_ms": 6.0}

    monkeypatch.setattr(bench, "bench_backend", fake_row)
    code = main(["bench", "-m", str(model_dir), "--backends", "torch,onnx", *FAST])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "devices torch cuda, onnx cpu, threads 1" in out.splitlines()[-1]


def test_bench_uses_passages_from_file(model_dir, tmp_path, capsys):
    path = tmp_path / "passages.txt"
    path.write_text("Berlin has 3.5 million inhabitants.\nParis is the capital of France.\n")
    code = main(["bench", "-m", str(model_dir), "--backends", "torch", "--file", str(path), "--json", *FAST])
    out, _ = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["rank_docs"] == 2  # only two passages exist, fewer than --rank-docs


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--backends", "torch,tensorrt"], "unknown tensorrt"), (["--pairs", "0"], "--pairs must be a positive"),
     (["--file", "/nonexistent/passages.txt"], "no such file"),
     (["--backends", "torch,torch"], "lists torch more than once")],
)
def test_bench_bad_options_are_one_line_errors(model_dir, capsys, extra, message):
    code = main(["bench", "-m", str(model_dir), *FAST, *extra])
    _, err = capsys.readouterr()
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1


def test_bench_rejects_classifiers(tiny_nli_model_dir, capsys):
    code = main(["bench", "-m", str(tiny_nli_model_dir), "--backends", "torch", *FAST])
    _, err = capsys.readouterr()
    assert code == 1 and "1-label model" in err


def test_synthetic_passages_are_distinct_and_sized():
    passages = synthetic_passages(20, 128)
    assert len(passages) == 20 and len(set(passages)) == 12  # one rotation per sentence of the pool
    assert all(80 <= len(p.split()) <= 120 for p in passages)


def test_bench_without_the_onnx_extra(model_dir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails as when it is not installed
    # Asked for: refused before the torch timing runs, naming the extra.
    code = main(["bench", "-m", str(model_dir), *FAST, "--backends", "torch,onnx"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "pip install 'crossencoder[onnx]'" in err
    # Not asked for: torch alone, and a note on what the extra adds.
    code = main(["bench", "-m", str(model_dir), *FAST, "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and [json.loads(line)["backend"] for line in out.splitlines()] == ["torch"]
    assert "only the torch backend" in err
