"""`crossencoder rank`, `score` and `models`: outputs, order, formats and one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from crossencoder import CrossEncoder
from crossencoder.cli.main import main

PASSAGES = ["Berlin has 3.5 million inhabitants.", "Paris is the capital of France.", "Berlin is known for museums."]


def run(argv, capsys, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_rank_text_file_sorted_with_top_k(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(PASSAGES[:2]) + "\n\n" + PASSAGES[2] + "\n")
    code, out, _ = run(["rank", "-m", tiny_model_dir, "-q", "berlin population", "--top-k", "2", path], capsys)
    assert code == 0
    expected = CrossEncoder(tiny_model_dir).rank("berlin population", PASSAGES, top_k=2, return_documents=True)
    lines = out.splitlines()
    assert [line.split("\t", 1)[1] for line in lines] == [h["text"] for h in expected]
    assert [float(line.split("\t")[0]) for line in lines] == pytest.approx([h["score"] for h in expected], abs=1e-4)


def test_rank_jsonl_stdin_json_output(tiny_model_dir, capsys, monkeypatch):
    stdin = "".join(json.dumps({"_id": str(i), "text": p}) + "\n" for i, p in enumerate(PASSAGES))
    code, out, _ = run(["rank", "-m", tiny_model_dir, "-q", "q", "--json", "-"], capsys, stdin, monkeypatch)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["rank"] for r in records] == [1, 2, 3]
    assert sorted(r["corpus_id"] for r in records) == [0, 1, 2]
    assert all(r["text"] == PASSAGES[r["corpus_id"]] for r in records)


def test_rank_text_output_is_one_line_per_hit_when_passages_hold_line_breaks(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["first line\nsecond line", "other\r\npassage"]))
    code, out, _ = run(["rank", "-m", tiny_model_dir, "-q", "q", path], capsys)
    assert code == 0
    assert sorted(line.split("\t", 1)[1] for line in out.splitlines()) == ["first line second line", "other passage"]


def test_rank_long_documents_reports_window(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("short passage\n" + "long passage words " * 200 + "\n")
    code, out, _ = run(["rank", "-m", tiny_model_dir, "-q", "q", "--json", "--long-documents", "max", path], capsys)
    assert code == 0
    records = {r["corpus_id"]: r for r in map(json.loads, out.splitlines())}
    assert records[0]["window"] == 0 and records[1]["window"] >= 0 and len(records[1]["window_span"]) == 2


def test_text_passages_starting_with_a_brace_stay_text(tiny_model_dir, tmp_path, capsys, monkeypatch):
    passages = ["{braces} open this passage", "a second passage"]
    for name in ("p.txt", "p.data"):
        path = tmp_path / name
        path.write_text("\n".join(passages) + "\n")
        code, out, err = run(["rank", "-m", tiny_model_dir, "-q", "q", "--json", path], capsys)
        assert code == 0, err
        assert sorted(json.loads(line)["text"] for line in out.splitlines()) == sorted(passages)
    code, out, _ = run(["rank", "-m", tiny_model_dir, "-q", "q", "--json", "-"], capsys,
                       json.dumps({"text": passages[0]}) + "\n", monkeypatch)
    assert code == 0 and json.loads(out)["text"] == passages[0]  # stdin: a JSON object line is JSONL
    bad = tmp_path / "p.jsonl"
    bad.write_text("{not json\n")
    code, _, err = run(["rank", "-m", tiny_model_dir, "-q", "q", bad], capsys)
    assert code == 1 and "p.jsonl:1: invalid JSON" in err


def test_rank_stride_needs_long_documents(tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(PASSAGES) + "\n")
    code, _, err = run(["rank", "-m", tiny_model_dir, "-q", "q", "--stride", "16", path], capsys)
    assert code == 1 and "--stride sets the overlap of --long-documents windows" in err


def test_score_tsv_keeps_order(tiny_model_dir, tmp_path, capsys):
    pairs = [("a man eats", "someone is eating"), ("a cat", "a dog"), ("x", "")]
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    code, out, _ = run(["score", "-m", tiny_model_dir, path], capsys)
    assert code == 0
    expected = CrossEncoder(tiny_model_dir).predict(pairs)
    np.testing.assert_allclose([float(x) for x in out.split()], expected, atol=1e-5)
    with_header = tmp_path / "header.tsv"
    with_header.write_text("query\tpassage\n" + path.read_text())
    code, out, _ = run(["score", "-m", tiny_model_dir, "--header", with_header], capsys)
    assert code == 0
    np.testing.assert_allclose([float(x) for x in out.split()], expected, atol=1e-5)


def test_score_symmetric_averages_both_orders(tiny_model_dir, tmp_path, capsys):
    pairs = [("a man eats", "someone is eating"), ("a cat", "a dog")]
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    code, out, _ = run(["score", "-m", tiny_model_dir, "--symmetric", path], capsys)
    assert code == 0
    expected = CrossEncoder(tiny_model_dir).predict(pairs, symmetric=True)
    np.testing.assert_allclose([float(x) for x in out.split()], expected, atol=1e-5)


def test_score_classifier_labels_and_probabilities(tiny_nli_model_dir, tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"sentence1": "a man eats", "sentence2": "someone eats"}) + "\n")
    code, out, _ = run(["score", "-m", tiny_nli_model_dir, "--json", path], capsys)
    assert code == 0
    record = json.loads(out)
    model = CrossEncoder(tiny_nli_model_dir)
    assert record["label"] == model.predict_labels([("a man eats", "someone eats")])[0]
    assert set(record["probabilities"]) == {"contradiction", "entailment", "neutral"}
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"a\tb\nonly one field\n", "pairs.txt:2: expected 2 tab-separated"),
        (b'{"text_a": "x"}\n', "pairs.txt:1: missing field"),
        (b'{"text_a": "x", "text_b": 3}\n', "must be a string"),
        (b'{"text_a": "x", "text_b": "y"}\n{not json\n', "pairs.txt:2: invalid JSON"),
        (b"ok\tfine\n\xff\xfe\tbad\n", "pairs.txt:2: not valid UTF-8"),
        (b"\n\n", "no pairs found"),
    ],
)
def test_score_bad_files_exit_nonzero_with_one_line(tiny_model_dir, tmp_path, capsys, content, message):
    path = tmp_path / "pairs.txt"
    path.write_bytes(content)
    code, out, err = run(["score", "-m", tiny_model_dir, path], capsys)
    assert code == 1 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_file_and_model(tiny_model_dir, tmp_path, capsys):
    code, _, err = run(["rank", "-m", tiny_model_dir, "-q", "q", tmp_path / "nope.txt"], capsys)
    assert code == 1 and "no such file" in err
    (tmp_path / "p.txt").write_text("a passage\n")
    code, _, err = run(["rank", "-m", "cross-encoder/does-not-exist", "-q", "q", tmp_path / "p.txt"], capsys)
    assert code == 1 and "Could not load model" in err and "local model folder" in err and ".." not in err
    code, _, err = run(["rank", "-m", tiny_model_dir, "-q", "  ", tmp_path / "p.txt"], capsys)
    assert code == 1 and "--query is empty" in err


def test_models_table_and_json(capsys):
    code, out, _ = run(["models"], capsys)
    assert code == 0 and "ms-marco-MiniLM-L6-v2" in out and "nli-deberta-v3-base" in out
    code, out, _ = run(["models", "--json"], capsys)
    entries = json.loads(out)
    assert {"name", "hub_id", "task", "num_labels", "activation", "max_length", "published"} <= set(entries[0])


def test_entry_point_help_and_exit_code(tmp_path):
    exe = [sys.executable, "-m", "crossencoder.cli.main"]
    help_text = subprocess.run([*exe, "rank", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--query" in help_text and "example" in help_text
    bad = subprocess.run([*exe, "rank", "-m", str(tmp_path / "none"), "-q", "q", "-"], input="p\n",
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("crossencoder: error:")


def test_load_reports_silenced_and_models_skips_the_transformers_import(tmp_path):
    from crossencoder.testing import minilm_dir

    # The bi-encoder folder loaded as a cross-encoder has no head: transformers reports the missing weights.
    exe = [sys.executable, "-m", "crossencoder.cli.main"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TRANSFORMERS_VERBOSITY", None)
    scored = subprocess.run([*exe, "score", "-m", str(minilm_dir()), "-"], input="a\tb\n", capture_output=True,
                            text=True, env=env)
    assert scored.returncode == 0 and scored.stderr == ""
    verbose = subprocess.run([*exe, "-v", "score", "-m", str(minilm_dir()), "-"], input="a\tb\n",
                             capture_output=True, text=True, env=env)
    assert "classifier.weight" in verbose.stderr
    probe = "import sys; from crossencoder.cli.main import main; main(['models']); print('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.endswith("False\n")


def test_ctrl_c_before_the_command_runs_exits_130(monkeypatch, capsys):
    # Building the parser and importing transformers take seconds: a Ctrl-C there is an interruption, not a traceback.
    import crossencoder.cli.main as cli_main

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "crossencoder: interrupted\n"


def test_help_names_defaults_and_keeps_example_commands_whole(capsys):
    with pytest.raises(SystemExit):
        main(["rank", "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert '  crossencoder rank --query "How many people live in Berlin?" --top-k 3 passages.txt' in lines
    assert "    crossencoder rank --ray --num-workers 4 --top-k 10 candidates.parquet ranked/" in lines
    text = " ".join(" ".join(lines).split())
    assert "cached) (default torch)" in text and "(default 0)" in text  # --backend, --gpus-per-worker


def test_rank_refuses_a_classifier_and_points_to_score(tiny_nli_model_dir, tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(PASSAGES) + "\n")
    code, out, err = run(["rank", "-m", tiny_nli_model_dir, "-q", "q", path], capsys)
    assert code == 1 and out == "" and "3 labels; rank needs a 1-label model" in err and "crossencoder score" in err


@pytest.mark.parametrize("option", ["--batch-size", "--max-batch-tokens", "--top-k"])
def test_non_positive_sizes_are_named_by_their_flag(option, tiny_model_dir, tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(PASSAGES) + "\n")
    code, out, err = run(["rank", "-m", tiny_model_dir, "-q", "q", option, "0", path], capsys)
    assert code == 1 and out == "" and err == f"crossencoder: error: {option} must be a positive integer, got 0.\n"


@pytest.fixture()
def prompted_model_dir(tiny_model_dir, tmp_path):
    path = tmp_path / "prompted"
    prompts = {"query": "query: ", "web": "web search: "}
    CrossEncoder(tiny_model_dir, prompts=prompts, default_prompt_name="query").save(path)
    return path


@pytest.mark.parametrize("flags, call", [([], {}), (["--prompt-name", "web"], {"prompt_name": "web"}),
                                         (["--prompt", "find: "], {"prompt": "find: "}),
                                         (["--prompt", ""], {"prompt": ""})])
def test_rank_and_score_apply_prompts(prompted_model_dir, tmp_path, capsys, flags, call):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(PASSAGES) + "\n")
    code, out, err = run(["rank", "-m", prompted_model_dir, "-q", "berlin population", "--json", *flags, path], capsys)
    assert code == 0, err
    model = CrossEncoder(prompted_model_dir)
    expected = model.rank("berlin population", PASSAGES, **call)
    assert [json.loads(line)["score"] for line in out.splitlines()] == pytest.approx([h["score"] for h in expected],
                                                                                     abs=1e-6)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"berlin population\t{p}\n" for p in PASSAGES))
    code, out, err = run(["score", "-m", prompted_model_dir, *flags, pairs], capsys)
    assert code == 0, err
    expected_scores = model.predict([("berlin population", p) for p in PASSAGES], **call)
    assert [float(line) for line in out.splitlines()] == pytest.approx(expected_scores.tolist(), abs=1e-5)


def test_unknown_prompt_name_is_a_one_line_error(prompted_model_dir, tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(PASSAGES) + "\n")
    code, out, err = run(["rank", "-m", prompted_model_dir, "-q", "q", "--prompt-name", "qeury", path], capsys)
    assert code == 1 and out == ""
    assert "prompt_name='qeury' is not one of this model's prompts" in err and "'web'" in err
    assert len(err.strip().splitlines()) == 1
