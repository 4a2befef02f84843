"""The ``backflip`` command line. Each sub-command lives in its own module."""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backflip", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    from backflip.cli import demo

    demo.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
