"""`import backflip` and its framework-neutral modules import no deep-learning framework."""
import subprocess
import sys

import pytest

import backflip

FRAMEWORKS = ("torch", "jax", "tensorflow", "keras", "pytensor")


def test_core_imports_no_framework():
    code = (
        "import sys, backflip, backflip.schedules, backflip.rules, backflip.conformance;"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.slow  # a child process imports torch
def test_adapter_imports_only_its_framework():
    code = (
        "import sys, backflip.torch;"
        "print(','.join(m for m in ('jax', 'tensorflow', 'keras', 'pytensor') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_parser_and_the_dann_config_import_no_framework():
    # `backflip --help` and `backflip data ...` build every sub-command's parser, and
    # `backflip train`'s flags come from TrainConfig: none of it may pull in torch.
    code = (
        "import sys; from backflip.cli import build_parser; build_parser();"
        "from backflip.dann import TrainConfig, METHODS; TrainConfig(source='moons');"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""



def test_cli_version_imports_no_framework():
    code = (
        "import sys; from backflip.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the version line, and no second line naming an imported framework
    assert out.stdout.strip().splitlines() == [f"backflip {backflip.__version__}"]
