#!/usr/bin/env bash
# Build backflip's sdist and wheel, check them, and try the wheel as a user would.
#
#   1. `python -m build` makes the sdist and the wheel in a temporary folder;
#   2. `twine check --strict` checks their metadata (the README renders on PyPI);
#   3. the wheel must hold py.typed and no tests, and carry backflip.__version__;
#   4. a fresh venv installs the wheel with the [torch] extra only (-c constraints.txt);
#   5. there: reverse_gradient gives -lambd * g, `backflip --version` prints the version,
#      and `backflip run moons` (no scikit-learn) exits 2 naming pip install "backflip[apps]".
#
# Usage: tools/check_wheel.sh (or `make wheel-check`). PYTHON is the interpreter that has
# `build` and `twine` (the [dev] extra; default .venv/bin/python). KEEP=1 keeps the folder.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-$root/.venv/bin/python}
start=$SECONDS

if ! "$python" -c "import build, twine" 2>/dev/null; then
    echo "check_wheel.sh: $python lacks build or twine; install the dev extra:" \
         "pip install -e '.[dev]' -c constraints.txt" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/backflip-wheel.XXXXXX")
if [[ "${KEEP:-0}" == 1 ]]; then
    echo "check_wheel.sh: keeping $tmp"
else
    trap 'rm -rf "$tmp"' EXIT
fi

echo "== build the sdist and the wheel"
"$python" -m build --outdir "$tmp/dist" "$root" > "$tmp/build.log" 2>&1 \
    || { cat "$tmp/build.log" >&2; exit 1; }
sdist=$(echo "$tmp"/dist/backflip-*.tar.gz)
wheel=$(echo "$tmp"/dist/backflip-*-py3-none-any.whl)
ls -l "$sdist" "$wheel"

echo "== twine check --strict"
"$python" -m twine check --strict "$sdist" "$wheel"

echo "== the wheel's contents"
"$python" - "$wheel" "$sdist" <<'EOF'
import re
import sys
import tarfile
import zipfile

wheel, sdist = sys.argv[1:]
names = zipfile.ZipFile(wheel).namelist()
version = re.search(r'^__version__ = "([^"]+)"', open("src/backflip/__init__.py").read(), re.M)[1]
assert f"backflip-{version}-py3-none-any.whl" in wheel, (wheel, version)
assert "backflip/py.typed" in names, "the wheel has no backflip/py.typed"
tests = [n for n in names if n.startswith(("tests/", "test/")) or "/tests/" in n]
assert not tests, f"the wheel holds tests: {tests[:5]}"
tops = sorted({n.split("/")[0] for n in names})
assert tops == ["backflip", f"backflip-{version}.dist-info"], tops
members = tarfile.open(sdist).getnames()
junk = [m for m in members if re.search(r"/(\.venv|runs|build|\.git|__pycache__)/", m)]
assert not junk, f"the sdist holds build or run files: {junk[:5]}"
print(f"ok: {len(names)} files in the wheel (version {version}, py.typed, no tests); "
      f"{len(members)} in the sdist")
EOF

echo "== a fresh venv with backflip[torch] from the wheel"
"$python" -m venv "$tmp/venv"
# torch is pinned in constraints.txt; this machine's pip finds the CPU wheel on disk
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$root/constraints.txt" "$wheel[torch]"

echo "== use it (outside the source tree)"
cd "$tmp"
"$tmp/venv/bin/python" - "$tmp" <<'EOF'
import importlib.util
import os
import subprocess
import sys

import torch

import backflip
import backflip.torch as bft

tmp = sys.argv[1]
venv = os.path.join(tmp, "venv")
assert backflip.__file__.startswith(venv), f"backflip came from {backflip.__file__}, not the venv"
assert os.path.exists(os.path.join(os.path.dirname(backflip.__file__), "py.typed"))
print(f"torch {torch.__version__} (CUDA {torch.version.cuda})")

# reverse_gradient: y = x, dL/dx = -lambd * dL/dy
x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
g = torch.tensor([0.5, 1.0, -2.0])
y = bft.reverse_gradient(x, lambd=0.7)
y.backward(g)
assert torch.equal(y.detach(), x.detach())
assert torch.allclose(x.grad, -0.7 * g), x.grad
print("reverse_gradient: dL/dx =", x.grad.tolist(), "= -0.7 * g")

cli = os.path.join(venv, "bin", "backflip")
out = subprocess.run([cli, "--version"], capture_output=True, text=True)
assert out.returncode == 0 and out.stdout == f"backflip {backflip.__version__}\n", out
print(out.stdout, end="")

assert importlib.util.find_spec("sklearn") is None, "scikit-learn should be absent here"
run = subprocess.run([cli, "run", "moons", "--out", os.path.join(tmp, "run")],
                     capture_output=True, text=True)
assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
assert 'pip install "backflip[apps]"' in run.stderr and "Traceback" not in run.stderr, run.stderr
print(f"backflip run moons: exit 2, {run.stderr.strip()}")
EOF

echo "check_wheel.sh: all checks passed in $((SECONDS - start)) s"
