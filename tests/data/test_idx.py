import gzip

import numpy as np
import pytest

from backflip import BackflipValueError
from backflip.data import parse_idx, read_idx, write_idx


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_round_trip_raw_and_gz(tmp_path, name):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(read_idx(path), arr)


def test_header_layout():
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 1, 0, 0, 0, 3, 5, 6, 7])
    np.testing.assert_array_equal(parse_idx(raw), [[5, 6, 7]])


def test_bad_magic():
    with pytest.raises(BackflipValueError, match=r"not an IDX file: its first bytes are '50 4b 03 04'"):
        parse_idx(b"PK\x03\x04rest", "x.zip")


def test_wrong_element_type():
    with pytest.raises(BackflipValueError, match=r"element type 0x0d; only unsigned bytes"):
        parse_idx(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]))


def test_truncated_header():
    with pytest.raises(BackflipValueError, match=r"truncated or malformed: an IDX header of 3"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]))


def test_truncated_data_says_how_to_refetch():
    raw = bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2])
    with pytest.raises(BackflipValueError,
                       match=r"f is truncated: .*shape \(4,\) \(4 bytes.*holds 2.*fetch mnist --force"):
        parse_idx(raw, "f")


def test_too_long():
    with pytest.raises(BackflipValueError, match=r"too long"):
        parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]))


def test_damaged_gzip(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1, 9]))[:-6])
    with pytest.raises(BackflipValueError, match=r"damaged gzip file"):
        read_idx(path)


def test_write_rejects_non_uint8(tmp_path):
    with pytest.raises(BackflipValueError, match=r"needs a uint8 array.*float64.*astype"):
        write_idx(tmp_path / "x", np.zeros(3))
