"""Data files: every format gives the examples the trainer expects, the task is guessed right, errors name the line."""

from __future__ import annotations

import json

import pytest

from crossencoder.training.data import DataFormatError, infer_task, is_binary, load_examples


def test_tsv_rows_become_labelled_pairs_or_ranking_samples(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("a man eats\tsomeone eats\t4.5\nq\tpositive\tneg 1\tneg 2\n\nx\ty\tentailment\n")
    assert load_examples(path) == [
        {"text_a": "a man eats", "text_b": "someone eats", "label": 4.5},
        ("q", "positive", "neg 1", "neg 2"),
        {"text_a": "x", "text_b": "y", "label": "entailment"},
    ]


@pytest.mark.parametrize("name, text", [
    ("d.tsv", "a\tb\t0.5\t\nq\tpos\tneg 1\tneg 2\t \t\n"),
    ("d.csv", "a,b,0.5,,\nq,pos,neg 1,neg 2,\n"),
])
def test_empty_trailing_cells_do_not_make_a_pair_a_ranking_sample(tmp_path, name, text):
    # "a<TAB>b<TAB>0.5<TAB>" was the ranking sample ("a", "b", "0.5", ""): MNRL then trained on the label as a text.
    path = tmp_path / name
    path.write_text(text)
    examples = load_examples(path)
    assert examples == [{"text_a": "a", "text_b": "b", "label": 0.5}, ("q", "pos", "neg 1", "neg 2")]
    assert infer_task(examples) == "regression"


def test_json_arrays_of_three_are_pairs_not_ranking_triples(tmp_path):
    # ["a", "b", "contradiction"] is three strings, like (query, positive, negative): the file format decides.
    rows = [["a man eats", "nobody eats", "contradiction"], ["q", ["d1", "d2"], [1, 0]]]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("d.json", "d.jsonl"):
        examples = load_examples(tmp_path / name)
        assert examples[0] == {"text_a": "a man eats", "text_b": "nobody eats", "label": "contradiction"}
        assert examples[1] == ("q", ["d1", "d2"], [1, 0])
        assert infer_task(examples[:1]) == "classification"
        assert infer_task(examples[1:]) == "ranking"


def test_task_inference_and_binary_detection():
    scores = [{"text_a": "a", "text_b": "b", "label": 3.2}, {"text_a": "c", "text_b": "d", "label": 0.0}]
    assert infer_task(scores) == "regression" and not is_binary(scores)
    binary = [("a", "b", 1), ("c", "d", 0)]
    assert infer_task(binary) == "regression" and is_binary(binary)
    assert infer_task([{"query": "q", "positive": "p", "negatives": ["n"]}]) == "ranking"


def test_csv_header_is_skipped_only_when_asked(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("first,second,score\na,b,0.5\n")
    assert load_examples(path, header=True) == [{"text_a": "a", "text_b": "b", "label": 0.5}]
    assert load_examples(path)[0]["label"] == "score"


def test_csv_fields_may_be_quoted_as_spreadsheets_and_pandas_write_them(tmp_path):
    # Sentences hold commas; without quoting this row would split into 4 columns and read as a ranking sample.
    path = tmp_path / "d.csv"
    path.write_text('"Hello, world",a greeting,0.5\n"He said ""hi""",b,1\n')
    assert load_examples(path) == [{"text_a": "Hello, world", "text_b": "a greeting", "label": 0.5},
                                   {"text_a": 'He said "hi"', "text_b": "b", "label": 1.0}]
    # TSV stays unquoted: STS sentences start with quotes that are part of the text.
    (tmp_path / "d.tsv").write_text('"Hi" he said\tb\t1\n')
    assert load_examples(tmp_path / "d.tsv")[0]["text_a"] == '"Hi" he said'


def test_lines_break_only_at_newlines_and_fields_have_no_size_limit(tmp_path):
    # json.dumps(..., ensure_ascii=False) writes U+2028 as is (valid JSON); str.splitlines() would cut the line there.
    row = {"text_a": "first line\u2028second line", "text_b": "b", "label": 1}
    (tmp_path / "d.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_examples(tmp_path / "d.jsonl") == [row]
    # A long document is longer than the csv module's default field limit (131072 characters).
    (tmp_path / "d.tsv").write_text("q\t" + "word " * 40000 + "\t1\n")
    assert len(load_examples(tmp_path / "d.tsv")[0]["text_b"]) == 200000


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"text_a": "a", "text_b": "b", "label": 1}\n{oops\n', "bad.jsonl:2: invalid JSON"),
        ("short.tsv", "a\tb\t1\nonly two\tcolumns\n", "short.tsv:2: expected at least 3 columns"),
        ("obj.json", '{"text_a": "a"}', "expected a JSON list"),
        ("empty.tsv", "\n\n", "empty.tsv: no examples"),
        # An empty label would read as a class name "" (a classification task) or fail far from this line.
        ("nolabel.tsv", "a\tb\t0.5\nc\td\t \n", "nolabel.tsv:2: the label \\(column 3\\) is empty"),
        # JSON may escape half of a UTF-16 pair: it failed mid-training with a bare "surrogates not allowed".
        ("cut.jsonl", '{"text_a": "a", "text_b": "b", "label": 1}\n["q", ["ok", "cut \\ud83d"], [1, 0]]\n',
         "cut.jsonl:2: a text is not valid Unicode: it holds a lone surrogate"),
        ("cut.json", '[{"text_a": "a", "text_b": "b", "label": 1}, {"text_a": "\\udc00", "text_b": "b", "label": 0}]',
         "cut.json: example 1: a text is not valid Unicode"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataFormatError, match=message):
        load_examples(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        load_examples(tmp_path / "nope.tsv")


def test_a_folder_or_stdin_is_named_as_such(tmp_path):
    with pytest.raises(DataFormatError, match="is a folder, not a file"):
        load_examples(tmp_path)
    with pytest.raises(DataFormatError, match="not stdin"):
        load_examples("-")
