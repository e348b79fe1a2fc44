"""Score calibration: fit Platt or temperature scaling on labelled pairs so scores read as probabilities.

The fitted map is ``p = sigmoid(a * logit + b)`` (temperature scaling: ``b = 0``, ``a = 1 / T``). It is stored in
the model's ``config.json`` under ``crossencoder.calibration`` and applied by ``predict(..., calibrated=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from crossencoder.errors import require_extra
from crossencoder.evaluation.metrics import expected_calibration_error
from crossencoder.evaluation.samples import to_labelled_pair
from crossencoder.files import write_text_atomic
from crossencoder.model.cross_encoder import CONFIG_KEY

if TYPE_CHECKING:
    from crossencoder import CrossEncoder


def fit_calibration(logits: Sequence[float], labels: Sequence[int],
                    method: Literal["platt", "temperature"] = "platt") -> dict[str, Any]:
    """Fit ``sigmoid(a * logit + b)`` to 0/1 labels by maximum likelihood (on smoothed targets, see below).

    Platt scaling fits ``a`` and ``b`` (a logistic regression on the logit, scipy L-BFGS); temperature scaling
    fits ``a = 1 / T`` only (scipy bounded 1-D search), which keeps the score order *and* the decision threshold at
    logit 0. Both fit Platt's smoothed targets, ``(n_pos + 1) / (n_pos + 2)`` for positives and ``1 / (n_neg + 2)``
    for negatives, rather than 0/1: on pairs the logits separate perfectly, 0/1 targets have no optimum (``a``
    grows without bound) and the fit would promise certainty from a few examples.

    Args:
        logits: Raw model logits, one per pair.
        labels: 0/1 labels.
        method: ``"platt"`` or ``"temperature"``.

    Returns:
        ``{"method": method, "a": float, "b": float}``.

    Raises:
        ValueError: unknown method, mismatched lengths, non-finite logits, non-binary labels or only one class.

    Example:
        >>> fit_calibration([-4.0, -1.0, 2.0, 5.0], [0, 0, 1, 1], method="temperature")
        {'method': 'temperature', 'a': ..., 'b': 0.0}
    """
    x = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=np.float64).ravel()
    if method not in ("platt", "temperature"):
        raise ValueError(f"Unknown calibration method {method!r}: use 'platt' or 'temperature'.")
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"Need one 0/1 label per logit (got {y.size} labels and {x.size} logits).")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"Calibration needs finite logits; logit {bad[0]} is {x[bad[0]]}.")
    if not set(np.unique(y)) <= {0.0, 1.0}:
        raise ValueError("Calibration needs 0/1 labels.")
    if len(np.unique(y)) < 2:
        raise ValueError("Calibration needs both positive and negative pairs.")
    require_extra("scipy", feature="Calibration")
    from scipy.optimize import minimize, minimize_scalar
    from scipy.special import expit, log_expit

    n_pos = y.sum()
    target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (y.size - n_pos + 2))

    def nll(z: np.ndarray) -> float:
        return -float(np.sum(target * log_expit(z) + (1 - target) * log_expit(-z)))

    if method == "platt":
        def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
            z = params[0] * x + params[1]
            residual = expit(z) - target  # d nll / d z
            return nll(z), np.array([np.sum(residual * x), np.sum(residual)])

        fit = minimize(objective, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        return {"method": "platt", "a": float(fit.x[0]), "b": float(fit.x[1])}
    best = minimize_scalar(lambda log_a: nll(np.exp(log_a) * x), bounds=(-10.0, 10.0), method="bounded")
    return {"method": "temperature", "a": float(np.exp(best.x)), "b": 0.0}


@dataclass
class CalibrationReport:
    """Result of :func:`calibrate`: the fitted calibration and the calibration error before and after.

    Attributes:
        calibration: ``{"method", "a", "b"}`` as stored in the config.
        ece_before: ECE of the model's own scores (its activation, e.g. sigmoid of the logit).
        ece_after: ECE of the calibrated probabilities on the same pairs.
        num_pairs: Number of labelled pairs used.
    """

    calibration: dict[str, Any]
    ece_before: float
    ece_after: float
    num_pairs: int

    def to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration, "ece_before": self.ece_before, "ece_after": self.ece_after,
                "num_pairs": self.num_pairs}


def calibrate(model: CrossEncoder, data: Sequence[Any], method: Literal["platt", "temperature"] = "platt",
              batch_size: int = 32, n_bins: int = 15, show_progress_bar: bool | None = None) -> CalibrationReport:
    """Fit a calibration for a 1-label model on labelled pairs and set it on ``model.config``.

    After this, ``model.predict(pairs, calibrated=True)`` returns probabilities; ``model.save(path)`` or
    :func:`save_calibration` persists the calibration.

    Args:
        model: A 1-label cross-encoder (e.g. an MS MARCO re-ranker with raw logits).
        data: ``(text_a, text_b, label)`` tuples or dicts with 0/1 labels (held-out data, not the training set).
        method: ``"platt"`` (scale and shift) or ``"temperature"`` (scale only).
        batch_size: Pairs per batch when scoring.
        n_bins: Bins of the expected calibration error.
        show_progress_bar: As in ``CrossEncoder.predict``.

    Returns:
        A :class:`CalibrationReport` with ECE before and after (measured on ``data`` itself).

    Raises:
        ValueError: the model has more than one label, or the labels are not 0/1 with both classes present.

    Example:
        >>> report = calibrate(model, [("q", "relevant passage", 1), ("q", "unrelated passage", 0), ...])
        >>> report.ece_before, report.ece_after
        (0.21, 0.03)
    """
    if model.num_labels != 1:
        raise ValueError("Score calibration applies to 1-label models only.")
    examples = [to_labelled_pair(x, i) for i, x in enumerate(data)]
    labels = []
    for i, x in enumerate(examples):
        try:
            value = float(x.label)
        except (TypeError, ValueError):
            raise ValueError(f"data[{i}] label must be 0 or 1, got {x.label!r}.") from None
        if value not in (0.0, 1.0):
            raise ValueError(f"data[{i}] label must be 0 or 1, got {x.label!r}.")
        labels.append(int(value))
    pairs = [(x.text_a, x.text_b) for x in examples]
    logits = np.asarray(model.predict(pairs, batch_size=batch_size, activation_fn=torch.nn.Identity(),
                                      show_progress_bar=show_progress_bar), dtype=np.float64).ravel()
    calibration = fit_calibration(logits, labels, method)
    # "Before" is what users see today: the model's default scores if they are probabilities, else sigmoid(logit).
    default = np.asarray(model.activation_fn(torch.from_numpy(logits)), dtype=np.float64)
    before = default if default.min() >= 0 and default.max() <= 1 else 1 / (1 + np.exp(-logits))
    settings = dict(getattr(model.config, CONFIG_KEY, None) or {})
    settings["calibration"] = calibration
    setattr(model.config, CONFIG_KEY, settings)
    # "After" goes through predict(calibrated=True), the one place that applies a calibration, so the reported
    # ECE is that of the scores users will get (at the cost of scoring the pairs a second time).
    after = np.asarray(model.predict(pairs, batch_size=batch_size, calibrated=True,
                                     show_progress_bar=show_progress_bar), dtype=np.float64).ravel()
    return CalibrationReport(calibration, expected_calibration_error(before, labels, n_bins),
                             expected_calibration_error(after, labels, n_bins), len(pairs))


def save_calibration(model_dir: str | os.PathLike, calibration: dict[str, Any]) -> Path:
    """Write ``calibration`` into ``model_dir/config.json`` in place (atomically), keeping every other key.

    Returns:
        The path of the updated config file.

    Raises:
        FileNotFoundError: the folder has no config.json.
    """
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass a model folder.")
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault(CONFIG_KEY, {})["calibration"] = calibration
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path
