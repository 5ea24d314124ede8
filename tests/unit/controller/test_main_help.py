"""`python -m dreambooth_operator --help` names every setting as its environment variable."""

from __future__ import annotations

import pytest
from dreambooth_operator.__main__ import main
from dreambooth_operator.settings import OperatorSettings


def test_help_lists_every_setting_and_exits_0(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name in OperatorSettings.model_fields:
        assert f"DREAMBOOTH_{name.upper()} " in out, name


def test_an_unknown_argument_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--namespace", "x"])
    assert done.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
