"""Run the Keras tests under every Keras backend, one subprocess each.

``KERAS_BACKEND`` is read once, when keras is imported, so each backend needs its
own process. The child runs this directory's backend-neutral test files and the Keras
tests of tests/conformance (``-k keras``: their backend id; every test of this directory
matches it too); its output is printed on failure, and its conformance outcomes are saved
as ``build/conformance-keras-<backend>.json``.
"""

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from backflip._testing import require_backend
from backflip.conformance import case_ids

keras = require_backend("keras")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = ROOT / "tests" / "conformance"
CHILD_FILES = (SHARED / "test_conformance.py", SHARED / "test_api.py", HERE / "test_ops.py",
               HERE / "test_layers.py", SHARED / "test_properties.py")


def _env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu",
               TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        env.pop(name, None)
    return env


# This process already runs the same files in-process under its own backend.
OTHER_BACKENDS = [b for b in ("tensorflow", "jax", "torch") if b != keras.backend.backend()]


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_keras_backend_suite(backend, tmp_path):
    require_backend(backend)
    cmd = [sys.executable, "-m", "pytest", *map(str, CHILD_FILES), "-k", "keras",
           "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
           "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
           "--junitxml", str(tmp_path / "junit.xml")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(backend), capture_output=True, text=True,
                          timeout=300)
    outcomes = {}
    if (tmp_path / "junit.xml").exists():
        outcomes = _save_conformance(tmp_path / "junit.xml", backend)
    assert proc.returncode == 0, (
        f"KERAS_BACKEND={backend} tests failed (exit {proc.returncode}):\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    )
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
    assert outcomes == dict.fromkeys(case_ids(), "passed"), proc.stdout[-2000:]  # every case ran


def _save_conformance(junit, backend):
    """``{"keras-<backend>": {case: outcome}}`` from the child's JUnit XML, into build/; returns
    the ``{case: outcome}``."""
    outcomes = {}
    for case in ET.parse(junit).iter("testcase"):
        name = case.get("name", "")
        prefix = "test_conformance[keras-"  # tests/conformance/test_conformance.py, Keras
        if name.startswith(prefix):
            failed = case.find("failure") is not None or case.find("error") is not None
            skipped = case.find("skipped") is not None
            outcomes[name[len(prefix):-1]] = "failed" if failed else "skipped" if skipped else "passed"
    (ROOT / "build").mkdir(exist_ok=True)
    out = ROOT / "build" / f"conformance-keras-{backend}.json"
    out.write_text(json.dumps({f"keras-{backend}": outcomes}, indent=1, sort_keys=True))
    return outcomes


@pytest.mark.slow  # a child process imports keras
def test_numpy_backend_raises_instead_of_warning(tmp_path):
    script = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")  # a warning (Keras' pass-through) fails this script
        import numpy as np
        import backflip.keras as bfk
        from backflip import BackflipError
        for make in (lambda: bfk.reverse_gradient(np.ones(2, "float32"), 0.5),
                     lambda: bfk.GradientReversal(0.5),
                     lambda: bfk.clip_gradient(np.ones(2, "float32"), max=0.1),
                     lambda: bfk.guided_relu(np.ones(2, "float32"))):
            try:
                make()
            except BackflipError as e:
                assert "Keras 'numpy' backend computes no gradients" in str(e), e
            else:
                raise SystemExit("no BackflipError under the numpy backend")
        print("raised")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env("numpy"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "raised" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow  # a child process imports keras on jax
def test_import_backflip_keras_alone_does_not_import_tensorflow(tmp_path):
    script = "import sys, backflip.keras; print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env("jax"),
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stdout + proc.stderr
