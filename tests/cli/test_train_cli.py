"""`crossencoder train`, `eval` and `calibrate`: end to end on the tiny models, config files, one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crossencoder import CrossEncoder
from crossencoder.cli.main import main
from crossencoder.evaluation import CorrelationEvaluator

PAIRS = [("cats purr", "a cat purrs", 4.5), ("cats purr", "stocks fell", 0.5), ("dogs bark", "a dog barks", 5.0),
         ("dogs bark", "rain is wet", 0.0), ("birds sing", "a bird sings", 4.0), ("birds sing", "tax forms", 1.0)]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_tsv(path, rows):
    path.write_text("".join("\t".join(str(c) for c in row) + "\n" for row in rows))
    return path


def test_train_regression_then_eval_json(tiny_model_dir, tmp_path, capsys):
    train = write_tsv(tmp_path / "train.tsv", PAIRS)
    code, out, err = run(["train", "-m", tiny_model_dir, "--train", train, "--eval", train, "--label-scale", 5,
                          "--output-dir", tmp_path / "run", "--epochs", 2, "--batch-size", 3, "--lr", 1e-3,
                          "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "regression" and result["loss"] == "bce" and result["global_step"] == 4
    assert set(result["metrics"]) == {"pearson", "spearman"}
    folder = result["model_path"]
    assert "train.tsv (6 examples)" in (tmp_path / "run" / "final" / "README.md").read_text()

    code, out, _ = run(["eval", "-m", folder, train, "--json"], capsys)
    assert code == 0
    evaluated = json.loads(out)
    assert evaluated["task"] == "regression" and evaluated["num_examples"] == 6
    assert evaluated["metrics"] == pytest.approx(result["metrics"], abs=1e-5)

    code, out, _ = run(["eval", "-m", folder, train, "--json", "--symmetric"], capsys)
    assert code == 0
    expected = CorrelationEvaluator(PAIRS, symmetric=True)(CrossEncoder(folder))
    assert json.loads(out)["metrics"] == pytest.approx(expected, abs=1e-5)


def test_train_classification_sets_label_names(tiny_model_dir, tmp_path, capsys):
    rows = [("a man eats", "someone eats", "entailment"), ("a man eats", "nobody eats", "contradiction"),
            ("a man eats", "the man is tall", "neutral")] * 2
    train = write_tsv(tmp_path / "nli.tsv", rows)
    code, out, err = run(["train", "-m", tiny_model_dir, "--train", train, "--eval", train, "-o", tmp_path / "run",
                          "--max-steps", 2, "--batch-size", 3], capsys)
    assert code == 0, err
    assert "accuracy" in out and "model saved to" in out
    model = CrossEncoder(tmp_path / "run" / "final")
    assert model.num_labels == 3
    assert model.id2label == {0: "contradiction", 1: "entailment", 2: "neutral"}


def test_fine_tuning_a_classifier_on_some_of_its_classes_keeps_its_head(tiny_nli_model_dir, tmp_path, capsys):
    rows = [("a man eats", "someone eats", "entailment"), ("a man eats", "the man is tall", "Neutral")] * 2
    train = write_tsv(tmp_path / "nli.tsv", rows)
    code, _, err = run(["train", "-m", tiny_nli_model_dir, "--train", train, "-o", tmp_path / "run",
                        "--max-steps", 1, "--batch-size", 4, "--lr", 1e-9], capsys)
    assert code == 0, err
    # Not a fresh 2-class head: the model still knows "contradiction", and its trained head is the one trained on.
    model = CrossEncoder(tmp_path / "run" / "final")
    assert model.id2label == {0: "contradiction", 1: "entailment", 2: "neutral"}
    before = CrossEncoder(tiny_nli_model_dir).model.classifier.weight
    assert torch.allclose(model.model.classifier.weight, before, atol=1e-6)


def test_train_ranking_from_config_file_with_flag_override(tiny_model_dir, tmp_path, capsys):
    rows = [{"query": "cats", "positive": "a cat purrs", "negatives": ["stocks fell"]},
            {"query": "dogs", "documents": ["a dog barks", "rain"], "labels": [1, 0]}]
    train = tmp_path / "rank.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "train.yaml"
    config.write_text(f"model: {tiny_model_dir}\ntrain: {train}\noutput_dir: {tmp_path / 'run'}\n"
                      "batch_size: 2\nnum_epochs: 5\nlr: 0.001\n")
    code, out, err = run(["train", "--config", config, "--epochs", 1, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert (result["task"], result["loss"], result["global_step"]) == ("ranking", "mnrl", 1)

    code, out, _ = run(["eval", "-m", result["model_path"], train], capsys)
    assert code == 0 and "ndcg@10" in out and "mrr@10" in out
    code, _, err = run(["eval", "-m", result["model_path"], train, "--symmetric"], capsys)
    assert code == 1 and "--symmetric applies to pair scores and classes" in err


def test_calibrate_updates_model_folder_in_place(tiny_model_dir, tmp_path, capsys):
    CrossEncoder(tiny_model_dir).save(tmp_path / "m")
    pairs = [("berlin", f"passage number {i}") for i in range(10)]
    logits = CrossEncoder(tmp_path / "m").predict(pairs, activation_fn=torch.nn.Identity())
    labels = (logits > np.median(logits)).astype(int)
    data = write_tsv(tmp_path / "held.tsv", [(a, b, int(y)) for (a, b), y in zip(pairs, labels)])
    code, out, err = run(["calibrate", "-m", tmp_path / "m", data, "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["calibration"]["method"] == "platt"
    assert report["ece_after"] <= report["ece_before"] + 1e-9
    assert CrossEncoder(tmp_path / "m").calibration == report["calibration"]


def test_calibrate_output_never_overwrites_an_existing_folder(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "m"
    CrossEncoder(tiny_model_dir).save(model)
    (model / "NOTES.md").write_text("mine")
    data = write_tsv(tmp_path / "held.tsv", [("berlin", f"passage {i}", i % 2) for i in range(10)])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("important")
    code, _, err = run(["calibrate", "-m", model, data, "--output", taken], capsys)
    assert code == 1 and "exists and is not an empty folder" in err
    assert (taken / "keep.txt").read_text() == "important"
    # --output naming the model's own folder updates its config.json and keeps the other files.
    code, _, err = run(["calibrate", "-m", model, data, "--output", model], capsys)
    assert code == 0, err
    assert (model / "NOTES.md").read_text() == "mine" and CrossEncoder(model).calibration is not None
    code, _, err = run(["calibrate", "-m", model, data, "--bins", "0"], capsys)
    assert code == 1 and "--bins must be a positive integer" in err


def test_eval_task_regression_is_kept_for_0_1_labels_and_json_has_no_nan(tiny_model_dir, tmp_path, capsys):
    binary = write_tsv(tmp_path / "bin.tsv", [("a man eats", "someone eats", 1), ("a cat", "a plane", 0),
                                              ("a dog runs", "a dog is running", 1), ("rain", "a book", 0)])
    code, out, _ = run(["eval", "-m", tiny_model_dir, binary, "--json"], capsys)
    auto = json.loads(out)
    assert code == 0 and auto["task"] == "classification" and "accuracy" in auto["metrics"]
    code, out, _ = run(["eval", "-m", tiny_model_dir, binary, "--json", "--task", "regression"], capsys)
    asked = json.loads(out)
    assert code == 0 and asked["task"] == "regression" and "spearman" in asked["metrics"]
    constant = write_tsv(tmp_path / "const.tsv", [("a", "b", 0.5), ("c", "d", 0.5)])
    code, out, _ = run(["eval", "-m", tiny_model_dir, constant, "--json"], capsys)
    # A constant column has no correlation: null, not the NaN token strict JSON parsers reject.
    assert code == 0 and "NaN" not in out and json.loads(out)["metrics"]["spearman"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--train", "x.tsv", "-o", "out"], "--model is required"),
        (["eval", "-m", "MODEL", "missing.tsv"], "missing.tsv: no such file"),
        (["train", "--config", "nope.yaml"], "nope.yaml: no such config file"),
        (["eval", "-m", "MODEL", "."], ".: is a folder, not a file"),
        (["eval", "-m", "MODEL", "-"], "not stdin"),
        (["eval", "-m", "MODEL", "--task", "classification", "scores.tsv"],
         "scores.tsv: example 2: label 4.5 is not a class id"),
    ],
)
def test_user_errors_are_one_line(argv, message, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tsv(tmp_path / "scores.tsv", [("a", "b", 1), ("c", "d", 4.5)])
    argv = [str(tiny_model_dir) if a == "MODEL" else a for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 1
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_config_key_and_bad_label_are_reported(tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"model": str(tiny_model_dir), "learning_rat": 1e-3}))
    code, _, err = run(["train", "--config", config], capsys)
    assert code == 1 and "unknown option(s) learning_rat" in err
    bad = write_tsv(tmp_path / "bad.tsv", [("a", "b", 4.0)])
    code, _, err = run(["train", "-m", tiny_model_dir, "--train", bad, "-o", tmp_path / "r"], capsys)
    assert code == 1 and "bad.tsv: example 1 label 4.0 is outside [0, 1]" in err


def test_example_errors_name_the_file_it_came_from(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tsv(tmp_path / "train.tsv", [(a, b, y / 5) for a, b, y in PAIRS])
    (tmp_path / "dev.jsonl").write_text('{"text_a": "x", "label": 1}\n')
    cases = [
        (["train", "-m", tiny_model_dir, "--train", "train.tsv", "--loss", "listnet", "-o", "r1"],
         "train.tsv: example 1 is missing a field"),
        (["train", "-m", tiny_model_dir, "--train", "train.tsv", "--eval", "dev.jsonl", "-o", "r2"],
         "dev.jsonl: example 1 is missing a field"),
        (["eval", "-m", tiny_model_dir, "dev.jsonl"], "dev.jsonl: Cannot tell the task: example 1"),
        (["calibrate", "-m", tiny_model_dir, "train.tsv"], "train.tsv: example 1 label must be 0 or 1"),
    ]
    for argv, message in cases:
        code, _, err = run(argv, capsys)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()  # refused before writing anything


def test_train_blends_teacher_bi_encoder_into_regression_labels(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import crossencoder.training.distillation as distillation

    seen = {}
    original = distillation.blend_teacher_labels

    def recording(examples, teacher_scores, weight=0.5):
        seen.update(labels=[y for *_, y in examples], teacher=list(teacher_scores), weight=weight)
        return original(examples, teacher_scores, weight)

    monkeypatch.setattr(distillation, "blend_teacher_labels", recording)
    train = write_tsv(tmp_path / "train.tsv", PAIRS)
    code, _, err = run(["train", "-m", tiny_model_dir, "--train", train, "--label-scale", 5, "-o", tmp_path / "run",
                        "--max-steps", 1, "--batch-size", 3, "--teacher-bi-encoder", tiny_model_dir,
                        "--teacher-weight", 0.3], capsys)
    assert code == 0, err
    assert seen["weight"] == 0.3 and seen["labels"] == pytest.approx([y / 5 for *_, y in PAIRS])
    assert len(seen["teacher"]) == len(PAIRS) and all(-1.0 <= c <= 1.0 for c in seen["teacher"])
    card = (tmp_path / "run" / "final" / "README.md").read_text()
    assert "bi-encoder cosine, weight 0.3" in card


def test_teacher_bi_encoder_is_refused_for_classification(tiny_model_dir, tmp_path, capsys):
    train = write_tsv(tmp_path / "nli.tsv", [("a", "b", "entailment"), ("a", "c", "neutral")])
    code, _, err = run(["train", "-m", tiny_model_dir, "--train", train, "-o", tmp_path / "r",
                        "--teacher-bi-encoder", "default"], capsys)
    assert code == 1 and "regression labels; this is a classification task" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("scale", ["0", "-5", "nan"])
def test_label_scale_must_be_a_positive_number(scale, tiny_model_dir, tmp_path, capsys):
    train = write_tsv(tmp_path / "train.tsv", PAIRS)
    code, _, err = run(["train", "-m", tiny_model_dir, "--train", train, "--label-scale", scale, "-o",
                        tmp_path / "r"], capsys)
    assert code == 1 and f"--label-scale must be a positive number, got {float(scale)}" in err
    assert not (tmp_path / "r").exists()


def test_config_values_are_checked_as_their_flags(tiny_model_dir, tmp_path, capsys):
    train = write_tsv(tmp_path / "train.tsv", [(a, b, y / 5) for a, b, y in PAIRS])
    base = {"model": str(tiny_model_dir), "train": str(train), "output_dir": str(tmp_path / "r")}
    config = tmp_path / "c.json"
    for extra, message in [({"resume": "false"}, "resume must be true or false, got 'false'"),
                           ({"train": [str(train)]}, "train must be a string"),
                           ({"label_scale": "five"}, "label_scale must be a number, got 'five'"),
                           ({"epochs": 1.5}, "epochs must be an integer, got 1.5"),
                           ({"task": "rank"}, "task must be one of auto, regression")]:
        config.write_text(json.dumps({**base, **extra}))
        code, _, err = run(["train", "--config", config], capsys)
        assert code == 1 and f"c.json: {message}" in err and len(err.strip().splitlines()) == 1, (extra, err)
    # YAML reads 2e-5 as a string; null passes on (no gradient clipping).
    config = tmp_path / "c.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in base.items()) + "learning_rate: 2e-5\nmax_grad_norm: null\n"
                      "max_steps: 1\n")
    code, _, err = run(["train", "--config", config], capsys)
    assert code == 0, err
    config.write_bytes(b"model: \xff\n")
    code, _, err = run(["train", "--config", config], capsys)
    assert code == 1 and "c.yaml: cannot parse config" in err


def test_train_help_names_defaults_and_keeps_examples_whole(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    text = " ".join(out.split())
    assert "--epochs EPOCHS passes over the training data (default 1)" in text
    assert "--batch-size BATCH_SIZE examples per forward pass (default 16)" in text
    assert "--label-scale 5 \\\n      --teacher-bi-encoder default --output-dir runs/sts-kd" in out


def test_eval_and_calibrate_refuse_a_classifier_for_scores(tiny_nli_model_dir, tmp_path, capsys):
    scores = write_tsv(tmp_path / "sts.tsv", PAIRS)
    code, _, err = run(["eval", "-m", tiny_nli_model_dir, scores], capsys)
    assert code == 1 and "3 labels; regression data needs a 1-label model" in err
    binary = write_tsv(tmp_path / "bin.tsv", [(a, b, int(y > 2)) for a, b, y in PAIRS])
    code, _, err = run(["calibrate", "-m", tiny_nli_model_dir, binary, "-o", tmp_path / "cal"], capsys)  # as train
    assert code == 1 and "3 labels; calibrate needs a 1-label model" in err and not (tmp_path / "cal").exists()


def test_eval_task_ranking_takes_mined_pairs(tiny_model_dir, tmp_path, capsys):
    # `crossencoder mine` writes one {"query", "passage", "label"} per line; --task ranking groups them by query.
    rows = [{"query": "q1", "passage": "p1", "label": 1}, {"query": "q1", "passage": "n1", "label": 0},
            {"query": "q2", "passage": "p2", "label": 1}, {"query": "q2", "passage": "n2", "label": 0}]
    path = tmp_path / "mined.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run(["eval", "-m", tiny_model_dir, path, "--task", "ranking", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "ranking" and 0.5 <= result["metrics"]["mrr@10"] <= 1.0


def test_class_names_mixed_with_numbers_are_refused(tiny_model_dir, tmp_path, capsys):
    # "1" would be read as class id 1 (here "entailment"), while a class named "1.0" got a head output of its own.
    train = write_tsv(tmp_path / "nli.tsv", [("a", "b", "entailment"), ("c", "d", 1), ("e", "f", "neutral")])
    code, _, err = run(["train", "-m", tiny_model_dir, "--train", train, "-o", tmp_path / "run"], capsys)
    assert code == 1 and "nli.tsv: class labels mix names (entailment, neutral) and numbers (1.0)" in err


def test_train_reads_tsv_files_with_a_header_row(tiny_model_dir, tmp_path, capsys):
    # The header "sentence1 sentence2 score" was read as an example with the class name "score".
    rows = [("sentence1", "sentence2", "score"), *PAIRS]
    train, dev = write_tsv(tmp_path / "train.tsv", rows), write_tsv(tmp_path / "dev.tsv", rows)
    argv = ["train", "-m", tiny_model_dir, "--train", train, "--label-scale", 5, "-o", tmp_path / "run",
            "--max-steps", 1, "--json"]
    code, _, err = run(argv, capsys)
    assert code == 1 and "class labels mix names (score) and numbers" in err and "pass --header" in err
    code, out, err = run([*argv, "--eval", dev, "--header"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "regression" and set(result["metrics"]) == {"pearson", "spearman"}
    assert "train.tsv (6 examples)" in (tmp_path / "run" / "final" / "README.md").read_text()


def test_an_eval_file_class_the_model_lacks_is_refused_before_training(tiny_model_dir, tmp_path, capsys):
    # It failed at the first evaluation, after an epoch of training, as "data[1]: label 'maybe' ..." with no file.
    train = write_tsv(tmp_path / "train.tsv", [("a", "b", "yes"), ("c", "d", "no"), ("e", "f", "yes")])
    dev = write_tsv(tmp_path / "dev.tsv", [("a", "b", "yes"), ("c", "d", "maybe")])
    code, _, err = run(["train", "-m", tiny_model_dir, "--train", train, "--eval", dev, "-o", tmp_path / "run"],
                       capsys)
    assert code == 1 and "dev.tsv: example 2: label 'maybe' is not one of the model's labels: no, yes" in err
    assert not (tmp_path / "run").exists()


def test_an_unknown_metric_for_best_model_is_refused_before_training(tiny_model_dir, tmp_path, capsys):
    # It showed at the first evaluation, after an epoch of training.
    train = write_tsv(tmp_path / "train.tsv", PAIRS)
    code, _, err = run(["train", "-m", tiny_model_dir, "--train", train, "--eval", train, "--label-scale", 5,
                        "-o", tmp_path / "run", "--metric-for-best-model", "accuracy"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert ("metric_for_best_model='accuracy' is not among the evaluator's metrics: pearson, spearman. Set "
            "metric_for_best_model (CLI: --metric-for-best-model) to one of them") in err
    assert not list((tmp_path / "run").glob("checkpoint-*"))
