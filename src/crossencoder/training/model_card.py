"""Model card (README.md) for a trained cross-encoder: base model, data, loss, hyper-parameters, eval metrics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crossencoder import __version__


def render_model_card(
    base_model: str,
    num_labels: int,
    train_data: str,
    num_examples: int,
    loss: str,
    loss_config: Mapping[str, Any],
    hyperparameters: Mapping[str, Any],
    metrics: Mapping[str, float] | None,
    eval_name: str | None,
    id2label: Mapping[int, str] | None = None,
) -> str:
    """Return the README.md text of a model folder written by the trainer.

    The YAML header uses Hugging Face Hub model-card keys, so the folder can be uploaded as is.

    Args:
        base_model: What training started from (a Hub id or a folder path).
        num_labels: Size of the head.
        train_data: A description of the training data (name or file).
        num_examples: Number of training examples.
        loss: Loss class name.
        loss_config: The loss's hyper-parameters.
        hyperparameters: The training arguments.
        metrics: Final evaluation metrics, if any.
        eval_name: Name of the evaluation set.
        id2label: Label names of a classifier.
    """
    pipeline = "text-ranking" if num_labels == 1 else "text-classification"
    header = [
        "---",
        "library_name: sentence-transformers",
        "tags:",
        "- cross-encoder",
        "- crossencoder",
        f"pipeline_tag: {pipeline}",
        f"base_model: {json.dumps(base_model)}",
        "---",
    ]
    if num_labels == 1:
        usage = ["from crossencoder import CrossEncoder  # or: from sentence_transformers import CrossEncoder", "",
                 'model = CrossEncoder("path/to/this/folder")', 'model.predict([("first text", "second text")])']
    else:  # sentence-transformers' CrossEncoder has no predict_labels
        usage = ["from crossencoder import CrossEncoder", "", 'model = CrossEncoder("path/to/this/folder")',
                 'model.predict_labels([("first text", "second text")])',
                 "# sentence-transformers: model.predict(pairs).argmax(axis=1) gives the label ids"]
    lines = [
        *header,
        "",
        "# Cross-encoder",
        "",
        f"Fine-tuned from `{base_model}` with crossencoder {__version__}: a "
        + ("1-label cross-encoder (one score per pair)." if num_labels == 1
           else f"{num_labels}-class pair classifier."),
        "",
        "## Usage",
        "",
        "```python",
        *usage,
        "```",
        "",
        "## Training",
        "",
        f"- Base model: `{base_model}`",
        f"- Data: {train_data} ({num_examples:,} examples)",
        f"- Loss: `{loss}`" + (f" ({_kv(loss_config)})" if loss_config else ""),
    ]
    if id2label:
        lines.append("- Labels: " + ", ".join(f"{k} = {v}" for k, v in sorted(id2label.items())))
    lines += ["", "| hyper-parameter | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in hyperparameters.items()]
    if metrics:
        lines += ["", "## Evaluation", "", f"On {eval_name or 'the evaluation set'}:", "", "| metric | value |",
                  "| --- | --- |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in metrics.items()]
    return "\n".join(lines) + "\n"


def _kv(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
