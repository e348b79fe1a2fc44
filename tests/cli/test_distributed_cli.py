"""`crossencoder score --ray` / `rank --ray`: Parquet output equal to in-process results, resume, one-line errors."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from crossencoder import CrossEncoder
from crossencoder.cli.main import main

ray = pytest.importorskip("ray")
pd = pytest.importorskip("pandas")


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def local_ray():
    """One 2-CPU Ray for the module; the CLI reuses a Ray this process already started."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def test_score_ray_writes_scores_reports_bad_rows_and_resumes(local_ray, tiny_model_dir, tmp_path, capsys):
    rows = [{"id": i, "query": f"question {i}", "passage": f"answer {i} " * (i + 1)} for i in range(12)]
    rows[5]["passage"] = None
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["score", "--ray", "-m", tiny_model_dir, "--num-workers", "2", "--shard-rows", "4",
            "--text-columns", "query", "passage", tmp_path / "pairs.jsonl", tmp_path / "out"]

    code, out, err = run(argv, capsys)

    assert code == 1 and out == ""  # bad rows make the exit status non-zero; the rest is written
    assert "11 rows in" in err and "1 bad row(s)" in err and "_errors.jsonl" in err
    assert json.loads((tmp_path / "out" / "_errors.jsonl").read_text())["id"] == 5
    scores = pd.read_parquet(tmp_path / "out").set_index("id")["score"]
    good = [r for r in rows if r["passage"]]
    expected = CrossEncoder(tiny_model_dir).predict([(r["query"], r["passage"]) for r in good])
    np.testing.assert_allclose(scores.loc[[r["id"] for r in good]], expected, atol=1e-5)

    code, _, err = run(argv, capsys)
    assert code == 1 and "(3 shards, 3 done by an earlier run)" in err
    code, _, err = run([*argv[:-1], tmp_path / "symmetric", "--symmetric"], capsys)
    assert code == 1 and "11 rows in" in err
    symmetric = pd.read_parquet(tmp_path / "symmetric").set_index("id")["score"]
    expected = CrossEncoder(tiny_model_dir).predict([(r["query"], r["passage"]) for r in good], symmetric=True)
    np.testing.assert_allclose(symmetric.loc[[r["id"] for r in good]], expected, atol=1e-5)


def test_rank_ray_keeps_top_k_per_query(local_ray, tiny_model_dir, tmp_path, capsys):
    queries = [
        {"query_id": f"q{q}", "query": f"topic {q}", "candidates": [f"passage {c} topic {c % 3}" for c in range(5)]}
        for q in range(3)
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))

    code, _, err = run(["rank", "--ray", "-m", tiny_model_dir, "--top-k", "2", tmp_path / "c.jsonl",
                        tmp_path / "out"], capsys)

    assert code == 0, err
    out = pd.read_parquet(tmp_path / "out")
    model = CrossEncoder(tiny_model_dir)
    for q in queries:
        hits = out[out["id"] == q["query_id"]].sort_values("rank")
        assert list(hits["corpus_id"]) == [h["corpus_id"] for h in model.rank(q["query"], q["candidates"], top_k=2)]


@pytest.mark.parametrize("argv, message", [
    (["score", "--ray", "{pairs}"], "--ray needs an output folder"),
    (["score", "--ray", "-", "{out}"], "not stdin"),
    (["score", "{pairs}", "{out}"], "needs --ray"),
    (["rank", "{pairs}"], "--query is required"),
    (["rank", "--ray", "-q", "q", "{pairs}", "{out}"], "--query is not used with --ray"),
    (["score", "--ray", "{pairs}", "{out}"], "no column 'text_a', 'text_b'"),
    (["score", "--ray", "--shard-rows", "0", "{pairs}", "{out}"], "--shard-rows must be a positive integer, got 0"),
    (["rank", "--ray", "--num-workers", "0", "{pairs}", "{out}"], "--num-workers must be a positive integer, got 0"),
    (["score", "--ray", "--cpus-per-worker", "-1", "{pairs}", "{out}"], "--cpus-per-worker must be 0 or more"),
])
def test_usage_errors_are_one_line(tiny_model_dir, tmp_path, capsys, argv, message):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"query": "q", "passage": "p"}) + "\n")
    argv = [a.format(pairs=pairs, out=tmp_path / "out") for a in argv]
    code, _, err = run([*argv, "-m", tiny_model_dir], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_missing_ray_says_how_to_install(tiny_model_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"text_a": "q", "text_b": "p"}) + "\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, _, err = run(["score", "--ray", "-m", tiny_model_dir, tmp_path / "pairs.jsonl", tmp_path / "out"], capsys)
    assert code == 1 and "pip install 'crossencoder[ray]'" in err


@pytest.mark.parametrize("job, flags, expected", [
    ("score", ["--prompt-name", "web"], {"prompt_name": "web", "prompt": None}),
    ("score", ["--prompt", ""], {"prompt_name": None, "prompt": ""}),
    ("rank", ["--prompt", "find: "], {"prompt_name": None, "prompt": "find: "}),
    ("rank", [], {"prompt_name": None, "prompt": None}),
])
def test_prompt_flags_reach_the_ray_job(tiny_model_dir, tmp_path, capsys, monkeypatch, job, flags, expected):
    from crossencoder import distributed

    calls = []

    def record(model, input_path, output_dir, **kwargs):
        calls.append(kwargs)
        return distributed.JobResult(Path(output_dir), shards=1, shards_skipped=0, rows_written=1)

    monkeypatch.setattr(distributed, f"{job}_dataset", record)
    code, _, err = run([job, "--ray", "-m", tiny_model_dir, *flags, tmp_path / "in.jsonl", tmp_path / "out"], capsys)
    assert code == 0, err
    assert len(calls) == 1 and {k: calls[0][k] for k in expected} == expected
