"""Reading and writing IDX files, the binary format MNIST ships in.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the element type,
``0x08`` = unsigned byte; ``NN`` the number of dimensions), ``NN`` big-endian
uint32 sizes, then the data in C order. Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from backflip._errors import BackflipValueError

__all__ = ["parse_idx", "read_idx", "write_idx"]

_UBYTE = 0x08


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file of unsigned bytes into a uint8 array.

    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])).tolist()
    [7, 9]
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BackflipValueError(
            f"{name} is not an IDX file: its first bytes are {data[:4].hex(' ')!r}, "
            "expected '00 00 08 NN'. Give the raw (or .gz) MNIST files such as "
            "train-images-idx3-ubyte."
        )
    if data[2] != _UBYTE:
        raise BackflipValueError(
            f"{name} holds IDX element type 0x{data[2]:02x}; only unsigned bytes (0x08), "
            "as in MNIST, are supported."
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise BackflipValueError(
            f"{name} is truncated or malformed: an IDX header of {ndim} dimensions needs "
            f"{header} bytes, the file has {len(data)}."
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "too long"
        raise BackflipValueError(
            f"{name} is {what}: its header says shape {shape} ({expected} bytes of data) "
            f"but it holds {got}. Re-fetch it (e.g. `backflip data fetch mnist --force`)."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a raw or gzip-compressed (``.gz``) IDX file into a uint8 array.

    >>> import os, tempfile
    >>> path = write_idx(os.path.join(tempfile.mkdtemp(), "a-idx2-ubyte.gz"),
    ...                  np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise BackflipValueError(
                f"{path} is a damaged gzip file ({err}). Re-download or re-fetch it."
            ) from err
    return parse_idx(raw, str(path))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write a uint8 array as a raw IDX file (gzip-compressed if the name ends in ``.gz``).

    Returns the path written; :func:`read_idx` reads it back.

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = write_idx(os.path.join(folder, "a-idx1-ubyte"), np.array([7, 9], np.uint8))
    >>> path.read_bytes().hex(" ")  # magic 00 00 08 01, size 2, then the data
    '00 00 08 01 00 00 00 02 07 09'
    """
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or array.ndim == 0:
        raise BackflipValueError(
            f"write_idx needs a uint8 array of >= 1 dimension; got {array.dtype} with "
            f"shape {array.shape}. Convert with array.astype(np.uint8)."
        )
    header = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    blob = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(blob, mtime=0) if path.suffix == ".gz" else blob)
    return path
