"""The ``backflip`` command line.

Each sub-command lives in its own module (``backflip.cli.<name>``) with a
``register(subparsers)`` function; heavy imports (torch, matplotlib) happen only
when a sub-command runs, so ``backflip --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from backflip import __version__
from backflip._errors import BackflipError
from backflip._optional import PACKAGES, missing

__all__ = ["main"]

SUBCOMMANDS = ("demo", "data", "train", "tune", "run", "saliency")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="backflip",
        description="Custom backward passes: gradient reversal, DANN training, saliency maps.",
    )
    parser.add_argument("--version", action="version", version=f"backflip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"backflip.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a usage or input error)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BackflipError as err:
        print(f"backflip: error: {err}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        # an optional package imported without backflip.require (torch, tqdm, ...): the
        # same message; every sub-command but demo needs the apps extra
        if err.name not in PACKAGES:  # not one of our optional packages, or only part of it
            raise
        extra = "torch" if args.command == "demo" else "apps"
        print(f"backflip: error: {missing(err.name, extra, f'backflip {args.command}')}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("backflip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
