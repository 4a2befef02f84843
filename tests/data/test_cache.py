import json
import os

import pytest

from backflip import BackflipValueError
from backflip.data import data_root, load
from backflip.data._cache import dataset_dir, read_manifest, sha256_file, verify_files


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("BACKFLIP_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("BACKFLIP_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "backflip"


def test_manifest_records_every_file(fake_root):
    manifest = read_manifest(fake_root / "mnist")
    assert sorted(manifest["files"]) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    for name, entry in manifest["files"].items():
        path = fake_root / "mnist" / name
        assert entry["sha256"] == sha256_file(path)
        assert entry["size"] == path.stat().st_size
    assert manifest["pinned"] is False
    # a successful check is remembered by (size, mtime_ns, ctime_ns, inode)
    st = (fake_root / "mnist" / "t10k-images-idx3-ubyte").stat()
    assert manifest["verified"]["t10k-images-idx3-ubyte"] == [
        st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def test_truncated_file_is_caught(fake_root):
    path = fake_root / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BackflipValueError,
                       match=r"train-images-idx3-ubyte is truncated or corrupt: .*"
                             r"Re-fetch it with `backflip data fetch mnist --force`"):
        load("mnist", root=fake_root)


def test_corrupt_file_same_size_is_caught(fake_root):
    path = fake_root / "mnist" / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(BackflipValueError,
                       match=r"t10k-labels-idx1-ubyte is corrupt: sha256 .* does not match.*"
                             r"backflip data fetch mnist --force"):
        load("mnist", "test", root=fake_root)
    load("mnist", "train", root=fake_root)  # the other split is fine


def test_corrupt_file_with_its_mtime_set_back_is_caught(fake_root):
    path = fake_root / "mnist" / "t10k-labels-idx1-ubyte"
    load("mnist", "test", root=fake_root)  # verified and remembered
    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[-3:] = bytes(b ^ 0x01 for b in raw[-3:])
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `touch -r` or `cp -p` would
    assert path.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(BackflipValueError, match=r"t10k-labels-idx1-ubyte is corrupt: sha256"):
        load("mnist", "test", root=fake_root)


def test_missing_file(fake_root):
    (fake_root / "mnist" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(BackflipValueError, match=r"is missing from the mnist cache.*--force"):
        load("mnist", "test", root=fake_root)


@pytest.mark.parametrize("text", ["{not json", "[]", '{"files": []}'])
def test_damaged_manifest(fake_root, text):
    (fake_root / "mnist" / "manifest.json").write_text(text)
    with pytest.raises(BackflipValueError, match=r"manifest .* is damaged.*fetch mnist --force"):
        load("mnist", root=fake_root)


def test_unchanged_file_is_not_rehashed(fake_root, monkeypatch):
    directory = fake_root / "mnist"
    manifest = read_manifest(directory)
    monkeypatch.setattr("backflip.data._cache.sha256_file",
                        lambda p: pytest.fail(f"hashed {p} again"))
    verify_files(directory, manifest)
    with pytest.raises(pytest.fail.Exception):
        verify_files(directory, manifest, full=True)


def test_unwritable_data_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(BackflipValueError,
                       match=r"data directory .*a-file/mnist is not writable .*Set "
                             r"\$BACKFLIP_DATA to a folder you can write to \(or pass root=\.\.\.; "
                             r"CLI: `backflip data --root DIR`, `backflip train --data-root DIR`\)"):
        dataset_dir("mnist", blocker, create=True)


def test_manifest_is_json(fake_root):
    text = (fake_root / "mnist" / "manifest.json").read_text()
    assert json.loads(text)["dataset"] == "mnist"


def test_unwritable_root_through_fetch_and_load(tmp_path, fake_mnist_dir):
    from backflip.data import fetch

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(BackflipValueError, match=r"not-a-dir/mnist is not writable"):
        fetch("mnist", root=blocker, source=fake_mnist_dir, verify=False)
    with pytest.raises(BackflipValueError, match=r"not-a-dir/syndigits is not writable"):
        load("syndigits", "test", root=blocker)
