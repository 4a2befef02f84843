"""Suite-wide settings, and the recorder of the conformance table.

Tests are grouped by directory: core, ops_<framework>, data, dann, saliency, and
conformance (the tests shared by every framework adapter, one driver per backend).
Every ``tests/conformance/test_conformance.py::test_conformance[<backend>-<case>]``
outcome is written to ``build/conformance.json`` at the end of the run;
``make conformance`` turns that file into the table in the README.
"""

import json
import os
import re
from pathlib import Path

# Keep every test on the CPU and quiet; CI has 2 cores and no GPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")

_CONFORMANCE = re.compile(
    r"conformance/test_conformance\.py::test_conformance"
    r"\[(?P<backend>torch|jax|tensorflow|keras|pytensor)-(?P<case>[^\]]+)\]"
)
_outcomes: dict[str, dict[str, str]] = {}


def pytest_runtest_logreport(report):
    match = _CONFORMANCE.search(report.nodeid)
    if match is None or (report.when != "call" and report.passed):
        return
    cell = _outcomes.setdefault(match["backend"], {})
    if report.failed or cell.get(match["case"]) != "failed":
        cell[match["case"]] = report.outcome


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or not _outcomes:
        return  # xdist workers report to the controller, which writes the file
    out = Path(session.config.rootpath) / "build" / "conformance.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(_outcomes, indent=1, sort_keys=True))
