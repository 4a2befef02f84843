import argparse

import pytest

from backflip.cli import data as data_cli
from backflip.cli import main


def _parser():
    parser = argparse.ArgumentParser(prog="backflip")
    data_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_register_builds_fetch_and_info():
    args = _parser().parse_args(["data", "fetch", "mnist", "--root", "R", "--from", "D",
                                 "--no-verify", "--force"])
    assert (args.name, args.root, args.source, args.verify, args.force) == ("mnist", "R", "D", False, True)
    assert args.func is data_cli.run_fetch
    assert _parser().parse_args(["data", "info"]).func is data_cli.run_info


@pytest.mark.parametrize("argv", [["data", "--help"], ["data", "fetch", "--help"],
                                  ["data", "info", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 0
    assert "usage: backflip data" in capsys.readouterr().out


def test_fetch_and_info_through_main(tmp_path, fake_mnist_dir, capsys):
    root = str(tmp_path / "c")
    assert main(["data", "fetch", "mnist", "--root", root, "--from", str(fake_mnist_dir),
                 "--no-verify"]) == 0
    assert "mnist: ready in" in capsys.readouterr().out
    assert main(["data", "info", "--root", root]) == 0
    out = capsys.readouterr().out
    assert "train-images-idx3-ubyte" in out and "user-supplied, not the pinned MNIST" in out
    assert "syndigits" in out and "not cached (run `backflip data fetch syndigits`)" in out
    # a corrupted file shows up as NO and a non-zero exit
    path = tmp_path / "c" / "mnist" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    assert main(["data", "info", "mnist", "--root", root]) == 1
    assert "NO" in capsys.readouterr().out


def test_errors_through_main(tmp_path, fake_mnist_dir, capsys):
    assert main(["data", "fetch", "mnits", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "backflip: error: unknown data set 'mnits'; valid names are moons" in err
    assert main(["data", "fetch", "mnist", "--root", str(tmp_path), "--from",
                 str(fake_mnist_dir)]) == 2
    assert "--no-verify" in capsys.readouterr().err
    assert main(["data", "info", "nope"]) == 2
    assert main(["data"]) == 2
