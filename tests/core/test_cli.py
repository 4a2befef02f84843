"""The `backflip` entry point: every sub-command is registered and has --help; --version."""
import tomllib
from pathlib import Path

import pytest

import backflip
from backflip._testing import require_backend
from backflip.cli import SUBCOMMANDS, main

require_backend("torch")


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: backflip {name}" in capsys.readouterr().out


def test_demo_prints_the_reversed_gradient(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "grad of sum(x^2)           : [2.0, -4.0, 6.0]" in out
    assert "grad through GRL, lambd=0.5: [-1.0, 2.0, -3.0]" in out


def test_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def test_version_prints_the_one_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"backflip {backflip.__version__}\n" == "backflip 0.1.0\n"


def test_pyproject_reads_the_version_from_the_package():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "backflip.__version__"}
