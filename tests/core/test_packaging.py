"""tools/check_wheel.sh: the sdist and the wheel build, pass `twine check --strict`, and the
wheel installed with [torch] alone in a fresh venv works (`make wheel-check`)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backflip._testing import require_all

SCRIPT = Path(__file__).parents[2] / "tools" / "check_wheel.sh"


@pytest.mark.slow
def test_check_wheel_script(tmp_path):
    missing = [m for m in ("build", "twine") if importlib.util.find_spec(m) is None]
    if missing:
        reason = (f"{' and '.join(missing)} not installed (the [dev] extra: pip install -e "
                  "'.[dev]' -c constraints.txt), so tools/check_wheel.sh cannot build")
        if require_all():
            pytest.fail(f"BACKFLIP_REQUIRE_ALL=1: {reason}")
        pytest.skip(reason)
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "check_wheel.sh: all checks passed" in proc.stdout
    assert 'exit 2, backflip: error: backflip run needs the package' in proc.stdout
