"""Run every benchmark in bench/ one after another (``make bench``).

Each script prints a Markdown table of ratios measured side by side in one run and
writes bench/out/<name>.json. Pass ``--quick`` to run the short versions.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = ("ops.py", "backends_jax_pytensor.py", "backends_tf_keras.py", "saliency.py",
           "override_torch.py", "override_jax_pytensor.py", "override_tf_keras.py", "train.py",
           "train_data.py", "method_step.py", "skada_methods.py")


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    failed = []
    for name in SCRIPTS:
        print(f"\n## bench/{name}\n", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(here / name), *argv])
        print(f"\n(bench/{name}: exit {rc}, {time.perf_counter() - start:.0f} s)", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
