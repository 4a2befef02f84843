"""A missing optional package raises BackflipImportError naming `pip install "backflip[EXTRA]"`.

Each feature runs in a fresh interpreter with the package hidden by a meta-path finder
(an import of it raises ModuleNotFoundError, as when it is not installed). Those children
import no framework and take a tenth of a second, so they stay in `make test-fast`; the
saliency one imports torch and is marked slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import backflip.cli.demo
import backflip.cli.run
from backflip import BackflipError, BackflipImportError
from backflip._optional import APPS, PACKAGES, missing, require
from backflip._testing import require_backend
from backflip.cli import main

_HIDE = """
import importlib.abc, sys

class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden)", name=name)
        return None

sys.meta_path.insert(0, _Hide())
"""


def run_hidden(hidden: tuple[str, ...], code: str, tmp_path, *args: str):
    """Run ``code`` (or ``-m backflip ARGS`` when code is empty) with ``hidden`` missing."""
    prelude = _HIDE.format(hidden=set(hidden))
    if not code:
        code = f"import sys, runpy; sys.argv = ['backflip', *{list(args)!r}]\n" \
               "runpy.run_module('backflip', run_name='__main__')"
    env = {**os.environ, "BACKFLIP_DATA": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def raised(proc) -> str:
    """The ``Class: message`` line the snippet printed for the error it caught."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


CATCH = """
try:
    {stmt}
except ImportError as err:
    print(f"{{type(err).__name__}} {{isinstance(err, ModuleNotFoundError)}}: {{err}}")
else:
    print("no error")
"""


# -- require itself (in this process) ------------------------------------------------------


def test_require_returns_the_module():
    assert require("json.decoder").__name__ == "json.decoder"


def test_require_names_the_extra_and_the_pip_name():
    with pytest.raises(BackflipImportError) as info:
        require("no_such_module_xyz.sub", extra="apps", purpose="this feature")
    err = info.value
    assert str(err) == ("this feature needs the package 'no_such_module_xyz', which is not "
                        'installed. Install it with: pip install "backflip[apps]"')
    assert isinstance(err, ModuleNotFoundError) and isinstance(err, BackflipError)
    assert err.name == "no_such_module_xyz"
    with pytest.raises(BackflipImportError, match=r"^backflip needs the package "
                       r"'no_such_module_xyz', .* pip install no_such_module_xyz$"):
        require("no_such_module_xyz")  # no extra known: the plain pip install


@pytest.mark.parametrize(("module", "pip_name", "extra"), [
    ("sklearn", "scikit-learn", "apps"), ("skimage", "scikit-image", "apps"),
    ("PIL", "pillow", "apps"), ("matplotlib.pyplot", "matplotlib", "apps"),
    ("tqdm.auto", "tqdm", "apps"), ("jax", "jax", "jax"), ("torch", "torch", "torch"),
])
def test_missing_knows_each_package_and_its_extra(module, pip_name, extra):
    assert str(missing(module, purpose="X")) == (
        f"X needs the package {pip_name!r}, which is not installed. Install it with: "
        f'pip install "backflip[{extra}]"')


def test_apps_lists_the_apps_extra():
    assert set(APPS) == {"torch", "sklearn", "skimage", "PIL", "matplotlib", "tqdm"}


def test_require_does_not_hide_a_missing_import_inside_an_installed_module(tmp_path, monkeypatch):
    (tmp_path / "half_installed.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("half_installed")
    assert not isinstance(info.value, BackflipImportError)
    assert info.value.name == "no_such_dependency_xyz"


# -- the CLI turns a bare ModuleNotFoundError of an optional package into exit 2 -------------


def test_cli_reports_a_missing_optional_package_without_a_traceback(monkeypatch, capsys):
    def needs_tqdm(args):
        raise ModuleNotFoundError("No module named 'tqdm'", name="tqdm")

    monkeypatch.setattr(backflip.cli.run, "run_run", needs_tqdm)
    assert main(["run", "moons"]) == 2
    assert capsys.readouterr().err == (
        "backflip: error: backflip run needs the package 'tqdm', which is not installed. "
        'Install it with: pip install "backflip[apps]"\n')
    monkeypatch.setattr(backflip.cli.demo, "run", needs_tqdm)
    assert main(["demo"]) == 2
    assert 'pip install "backflip[torch]"' in capsys.readouterr().err


@pytest.mark.parametrize("name", ["no_such_module_xyz", "torch._no_such_part", None])
def test_cli_reraises_other_missing_modules(monkeypatch, name):
    def broken(args):
        raise ModuleNotFoundError("No module named ...", name=name)

    monkeypatch.setattr(backflip.cli.demo, "run", broken)
    with pytest.raises(ModuleNotFoundError):
        main(["demo"])


# -- each feature with its package hidden (a fresh interpreter each) -----------------------


def test_load_moons_without_sklearn(tmp_path):
    proc = run_hidden(("sklearn",), CATCH.format(
        stmt="from backflip import data; data.load('moons', 'train')"), tmp_path)
    assert raised(proc) == (
        "BackflipImportError True: the moons data set needs the package 'scikit-learn', which "
        'is not installed. Install it with: pip install "backflip[apps]"')


def test_a_plot_without_matplotlib(tmp_path):
    stmt = ("from backflip.dann._plots import TrainingCurves; "
            "TrainingCurves([{'epoch': 1, 'train_acc': 0.5}]).plot()")
    proc = run_hidden(("matplotlib",), CATCH.format(stmt=stmt), tmp_path)
    assert raised(proc) == (
        "BackflipImportError True: TrainingCurves.plot needs the package 'matplotlib', which "
        'is not installed. Install it with: pip install "backflip[apps]"')


def test_backflip_run_moons_without_sklearn_exits_2_before_any_work(tmp_path):
    proc = run_hidden(("sklearn",), "", tmp_path, "run", "moons", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == (
        "backflip: error: backflip run needs the package 'scikit-learn', which is not "
        'installed. Install it with: pip install "backflip[apps]"\n')
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("adapter", ["jax", "tensorflow", "keras", "pytensor", "torch"])
def test_import_adapter_without_its_framework(adapter, tmp_path):
    proc = run_hidden((adapter,), CATCH.format(stmt=f"import backflip.{adapter}"), tmp_path)
    pip_name, extra = PACKAGES[adapter]
    assert raised(proc) == (
        f"BackflipImportError True: backflip.{adapter} needs the package {pip_name!r}, which "
        f'is not installed. Install it with: pip install "backflip[{extra}]"')


@pytest.mark.slow  # imports torch in the child: seconds
def test_saliency_plot_without_matplotlib(tmp_path):
    require_backend("torch")
    stmt = ("import numpy as np; from backflip.saliency import save_grid; "
            "save_grid('g.png', np.zeros((1, 1, 4, 4)), np.ones((1, 1, 4, 4)))")
    proc = run_hidden(("matplotlib",), CATCH.format(stmt=stmt), tmp_path)
    assert raised(proc) == (
        "BackflipImportError True: save_grid needs the package 'matplotlib', which is not "
        'installed. Install it with: pip install "backflip[apps]"')
    assert not (tmp_path / "g.png").exists()


def test_the_dann_trainer_without_torch_names_the_extra(tmp_path):
    # the typed config needs no framework (the CLI builds --help from it); the trainer does
    stmt = ("import backflip.dann as d; d.TrainConfig(source='moons', target='moons-rotated'); "
            "d.train")
    proc = run_hidden(("torch",), CATCH.format(stmt=stmt), tmp_path)
    assert raised(proc) == (
        "BackflipImportError True: backflip.dann.train needs the package 'torch', which is "
        'not installed. Install it with: pip install "backflip[torch]"')
