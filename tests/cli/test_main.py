"""The CLI entry point: how errors reach the user."""

from __future__ import annotations

import pytest

import crossencoder.cli.predict as predict_cli
from crossencoder.cli.main import main
from crossencoder.errors import CrossEncoderError


class _OnPurpose(CrossEncoderError):
    """An error raised on purpose that is none of OSError / ValueError / TypeError / RuntimeError."""


def test_any_crossencoder_error_is_one_line_not_a_traceback(monkeypatch, capsys):
    def fail(args):
        raise _OnPurpose("the thing the user must fix\nsecond line")

    monkeypatch.setattr(predict_cli, "run_models", fail)
    monkeypatch.delenv("CROSSENCODER_DEBUG", raising=False)
    assert main(["models"]) == 1
    assert capsys.readouterr().err == "crossencoder: error: the thing the user must fix\n"


def test_debug_mode_keeps_the_traceback(monkeypatch):
    def fail(args):
        raise _OnPurpose("boom")

    monkeypatch.setattr(predict_cli, "run_models", fail)
    monkeypatch.setenv("CROSSENCODER_DEBUG", "1")
    with pytest.raises(_OnPurpose):
        main(["models"])
