"""Calibration: the fit recovers known parameters, lowers ECE, and predict(calibrated=True) applies it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crossencoder import CrossEncoder
from crossencoder.training import calibrate, fit_calibration, save_calibration


def synthetic(a: float, b: float, n: int = 20000, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-6, 6, n)
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-(a * logits + b)))).astype(int)
    return logits, labels


def test_platt_recovers_scale_and_shift():
    logits, labels = synthetic(0.5, -1.0)
    fit = fit_calibration(logits, labels, "platt")
    assert fit["method"] == "platt"
    assert fit["a"] == pytest.approx(0.5, abs=0.03)
    assert fit["b"] == pytest.approx(-1.0, abs=0.06)


def test_temperature_recovers_scale_with_zero_shift():
    logits, labels = synthetic(0.25, 0.0)
    fit = fit_calibration(logits, labels, "temperature")
    assert fit["b"] == 0.0
    assert fit["a"] == pytest.approx(0.25, abs=0.02)


def test_fit_rejects_bad_labels():
    with pytest.raises(ValueError, match="both positive and negative"):
        fit_calibration([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="0/1 labels"):
        fit_calibration([1.0, 2.0], [0, 2])
    with pytest.raises(ValueError, match="Unknown calibration method"):
        fit_calibration([1.0, 2.0], [0, 1], "isotonic")


def test_fit_refuses_non_finite_logits():
    # A model that outputs NaN would otherwise get a made-up calibration (the optimizer's starting point).
    with pytest.raises(ValueError, match="logit 0 is nan"):
        fit_calibration([float("nan"), 1.0, 2.0, 3.0], [0, 1, 0, 1])


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_perfectly_separated_pairs_give_finite_not_certain_probabilities(method):
    # Plain maximum likelihood has no optimum here (a -> infinity): the fit would stop wherever the optimizer gave
    # up and promise 0/1 probabilities from four pairs. Platt's smoothed targets keep it finite.
    fit = fit_calibration([-3.0, -2.0, 2.0, 3.0], [0, 0, 1, 1], method)
    top = 1 / (1 + np.exp(-(fit["a"] * 3.0 + fit["b"])))
    assert 0.5 < top < 0.9


class OverconfidentModel:
    """A 1-label model whose logits are 8x too large (like MS MARCO rerankers' raw scores)."""

    num_labels = 1

    def __init__(self, logits):
        self.logits = {f"t{i}": float(x) for i, x in enumerate(logits)}
        self.config = type("Config", (), {})()
        self.activation_fn = torch.nn.Sigmoid()

    def predict(self, pairs, activation_fn=None, calibrated=False, **kwargs):
        logits = np.array([self.logits[b] for _, b in pairs], dtype=np.float64)
        if not calibrated:
            return logits
        fit = self.config.crossencoder["calibration"]  # calibrate() must have stored it before asking
        return 1 / (1 + np.exp(-(fit["a"] * logits + fit["b"])))


def test_calibrate_lowers_ece_and_sets_config():
    true_logits, labels = synthetic(1.0, 0.0, n=4000)
    model = OverconfidentModel(8 * true_logits)
    report = calibrate(model, [("q", f"t{i}", int(y)) for i, y in enumerate(labels)], method="platt")
    assert report.num_pairs == 4000
    assert report.ece_before > 0.1
    assert report.ece_after < 0.03
    assert report.calibration["a"] == pytest.approx(1 / 8, rel=0.1)
    assert model.config.crossencoder["calibration"] == report.calibration


def test_calibrated_predict_round_trip(tiny_model_dir, tmp_path):
    model = CrossEncoder(tiny_model_dir)
    pairs = [("berlin", f"passage number {i} about things") for i in range(12)]
    logits = model.predict(pairs, activation_fn=torch.nn.Identity())
    # Label by the median logit so both classes are present, whatever the random weights are.
    labels = (logits > np.median(logits)).astype(int)
    report = calibrate(model, [(a, b, int(y)) for (a, b), y in zip(pairs, labels)], method="temperature")
    model.save(tmp_path / "m")
    reloaded = CrossEncoder(tmp_path / "m")
    a, b = report.calibration["a"], report.calibration["b"]
    assert reloaded.predict(pairs, calibrated=True) == pytest.approx(1 / (1 + np.exp(-(a * logits + b))), abs=1e-5)


def test_save_calibration_keeps_other_config_keys(tiny_model_dir, tmp_path):
    model = CrossEncoder(tiny_model_dir)
    model.save(tmp_path)
    before = json.loads((tmp_path / "config.json").read_text())
    save_calibration(tmp_path, {"method": "platt", "a": 0.3, "b": -0.2})
    after = json.loads((tmp_path / "config.json").read_text())
    assert after.pop("crossencoder") == {"calibration": {"method": "platt", "a": 0.3, "b": -0.2}}
    assert after == {k: v for k, v in before.items() if k != "crossencoder"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert CrossEncoder(tmp_path).calibration == {"method": "platt", "a": 0.3, "b": -0.2}


def test_calibrate_rejects_classifiers_and_non_binary_labels(tiny_nli_model_dir, tiny_model_dir):
    with pytest.raises(ValueError, match="1-label"):
        calibrate(CrossEncoder(tiny_nli_model_dir), [("a", "b", 1)])
    with pytest.raises(ValueError, match=r"data\[0\] label must be 0 or 1"):
        calibrate(CrossEncoder(tiny_model_dir), [("a", "b", 0.5)])
