"""The user's own data: .npz, .npy and .csv files, folders of images, and one entry point.

* :func:`read_npz`, :func:`read_npy`, :func:`read_csv` read a file into an
  :class:`~backflip.data.ArrayDataset`; :class:`ImageFolder` reads a folder with one
  sub-folder of images per class (Pillow, at the point of use).
* :func:`open_dataset` takes a built-in name or any of those paths.
* :func:`fingerprint` and :func:`describe` record what a run was trained on.

Pixel values: 8-bit data (``uint8`` arrays, 8-bit images) is divided by 255 to
``[0, 1]``; other numbers are cast to float32 unchanged (16- and 32-bit integer grey
images are divided by 65535). Files have no splits: a test set is its own file.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip._optional import require
from backflip.data._dataset import ArrayDataset
from backflip.data._registry import DATASETS, load

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolder",
    "describe",
    "fingerprint",
    "open_dataset",
    "read_csv",
    "read_npy",
    "read_npz",
]

#: File suffixes :class:`ImageFolder` reads (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff",
                                     ".webp")

#: Pillow modes read as one grey channel (alpha, where present, is dropped).
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})

_SAVE_HINT = "np.savez(path, x=np.asarray(x, np.float32), y=np.asarray(y, np.int64))"


def _forms() -> str:
    return (f"a built-in name ({', '.join(DATASETS)}), a .npz file with keys x and y (no y: "
            "unlabelled), a .npy file of x (unlabelled), a .csv file with a header row and a "
            "label column (label_column=, CLI --label-column NAME), or a folder with one "
            "sub-folder of images per class (root/<class>/<image>.png)")


def _file(path: str | os.PathLike[str], what: str) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise BackflipTypeError(f"{what} needs a path (str or os.PathLike); got "
                                f"{type(path).__name__}.")
    p = Path(path).expanduser()
    if not p.exists():
        raise BackflipValueError(f"{what}: no such file {p.absolute()}.")
    if p.is_dir():
        raise BackflipValueError(
            f"{what}: {p.absolute()} is a folder, not a file. A folder of class sub-folders "
            "is read by backflip.data.ImageFolder or open_dataset."
        )
    return p


def _origin(form: str, path: Path, **more: Any) -> dict[str, Any]:
    return {"form": form, "path": str(path.resolve()), **more}


def _float32(x: np.ndarray, where: str) -> np.ndarray:
    """uint8 -> x / 255 in [0, 1]; other real numbers cast to float32; anything else refused."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if x.dtype.kind in "biuf":
        return x.astype(np.float32, copy=False)
    raise BackflipTypeError(
        f"x in {where} has dtype {x.dtype}; backflip needs real numbers (float32 in [0, 1] "
        f"for images). Save numeric arrays: {_SAVE_HINT}."
    )


def _numpy_file(p: Path, kind: str, keys: tuple[str, ...] = ()) -> Any:
    """``np.load(p, allow_pickle=False)``: the array of a .npy, or the .npz's arrays ``keys``.

    Our own file object, closed here: NumPy leaks the one it opens when a zip is corrupt.
    """
    with open(p, "rb") as f:
        head = f.read(6)
        f.seek(0)
        is_zip, is_npy = head[:2] == b"PK", head == b"\x93NUMPY"
        if kind == "npz" and is_npy:
            raise BackflipValueError(
                f"{p} is a single .npy array, not an .npz archive; read it with read_npy, or "
                f"save x and y together: {_SAVE_HINT}."
            )
        if kind == "npy" and is_zip:
            raise BackflipValueError(f"{p} is an .npz archive, not a .npy array; read it with "
                                     "read_npz.")
        if head[:1] == b"\x80":
            raise _pickle_error(p)
        if not (is_zip or is_npy):
            raise BackflipValueError(
                f"{p} is not a NumPy .{kind} file (it starts with {head!r}); it may be corrupt "
                f"or of another format. Save arrays with {_SAVE_HINT}."
            )
        key = None
        try:
            loaded = np.load(f, allow_pickle=False)
            if kind == "npy":
                return loaded
            with loaded as npz:
                if "x" not in npz.files:
                    found = ", ".join(npz.files) if npz.files else "none"
                    raise BackflipValueError(
                        f"{p} has no array 'x' (keys found: {found}); read_npz needs x "
                        f"(samples) and optionally y (labels), one split per file: {_SAVE_HINT}."
                    )
                arrays = {}
                for key in keys:
                    if key in npz.files:
                        arrays[key] = npz[key]
                return arrays
        except BackflipValueError:
            raise
        except ValueError as err:
            if "pickle" in str(err):
                raise _pickle_error(p, key) from None
            raise _corrupt(p, err) from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise _corrupt(p, err) from None


def _pickle_error(p: Path, key: str | None = None) -> BackflipValueError:
    what = f"its array {key!r} holds" if key else "it holds"
    return BackflipValueError(
        f"{p} cannot be read: {what} pickled (object) data, which backflip does not load "
        "(allow_pickle=False, since loading a pickle can run code). Save plain numeric "
        f"arrays instead: {_SAVE_HINT}."
    )


def _corrupt(p: Path, err: BaseException) -> BackflipValueError:
    return BackflipValueError(f"{p} cannot be read ({err}); it may be truncated or corrupt. "
                              "Write it again.")


def read_npz(path: str | os.PathLike[str], *, name: str | None = None) -> ArrayDataset:
    """Read an ``.npz`` with key ``x`` and optional ``y`` and ``num_classes``.

    No ``y`` means unlabelled (a target). ``x`` becomes float32 (``uint8`` is divided
    by 255 to ``[0, 1]``); ``y`` is kept as stored, for :func:`check_dataset` to judge.
    Other keys are ignored. Loaded with ``allow_pickle=False``. ``name`` defaults to
    the file's stem.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "digits.npz")
    >>> np.savez(path, x=np.full((3, 1, 2, 2), 255, np.uint8), y=np.array([0, 1, 1]))
    >>> ds = read_npz(path)
    >>> ds.name, ds.x.dtype.name, float(ds.x.max()), ds.y.tolist(), ds.num_classes
    ('digits', 'float32', 1.0, [0, 1, 1], 2)
    >>> tmp.cleanup()
    """
    p = _file(path, "read_npz")
    arrays = _numpy_file(p, "npz", ("x", "y", "num_classes"))
    num_classes = None
    if "num_classes" in arrays:
        k = arrays["num_classes"]
        if k.size != 1 or not np.issubdtype(k.dtype, np.integer):
            raise BackflipValueError(
                f"num_classes in {p} must be one integer; got an array of dtype {k.dtype} and "
                f"shape {k.shape}. Save it as num_classes=K, or leave it out to infer y.max() + 1."
            )
        num_classes = int(k.reshape(()))
    return ArrayDataset(_float32(arrays["x"], str(p)), arrays.get("y"), num_classes,
                        name or p.stem, origin=_origin("npz", p))


def read_npy(path: str | os.PathLike[str], *, name: str | None = None) -> ArrayDataset:
    """Read a ``.npy`` of ``x`` alone: an unlabelled set (a target domain).

    ``x`` becomes float32 as in :func:`read_npz`.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "target.npy")
    >>> np.save(path, np.zeros((4, 2)))
    >>> ds = read_npy(path)
    >>> ds.x.shape, ds.x.dtype.name, ds.labelled
    ((4, 2), 'float32', False)
    >>> tmp.cleanup()
    """
    p = _file(path, "read_npy")
    x = _numpy_file(p, "npy")
    return ArrayDataset(_float32(x, str(p)), None, None, name or p.stem, origin=_origin("npy", p))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_rows(p: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows and their line numbers; blank lines skipped."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or not any(c.strip() for c in header):
                raise BackflipValueError(
                    f"{p} is empty; read_csv needs a header row of column names (e.g. "
                    "f0,f1,label) and one row per sample."
                )
            header = [c.strip() for c in header]
            rows, lines = [], []
            for row in reader:
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise BackflipValueError(
                        f"{p} line {reader.line_num} (data row {len(rows) + 1}) has "
                        f"{len(row)} cells but the header has {len(header)} columns; every "
                        "row needs one cell per column."
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as err:
        raise BackflipValueError(f"{p} is not UTF-8 text ({err}); save the CSV as UTF-8.") from None
    except csv.Error as err:
        raise BackflipValueError(f"{p} is not a valid CSV file ({err}).") from None
    return header, rows, lines


def _check_header(p: Path, header: list[str]) -> None:
    for j, col in enumerate(header):
        if not col:
            pandas = (" (a pandas index? write it with df.to_csv(path, index=False))"
                      if j == 0 else "")
            raise BackflipValueError(
                f"column {j + 1} of the header of {p} has no name{pandas}; every column needs "
                "a name."
            )
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise BackflipValueError(f"{p} has the column names {dup} more than once; names must "
                                 "be unique.")
    if all(_is_number(c) for c in header):
        raise BackflipValueError(
            f"the first row of {p} is all numbers ({', '.join(header[:4])}, ...), not column "
            "names; read_csv needs a header row (e.g. f0,f1,label) above the data."
        )


def _features(p: Path, header: list[str], rows: list[list[str]], lines: list[int],
              columns: list[int], label_column: str, has_label: bool) -> np.ndarray:
    cells = [[row[j] for j in columns] for row in rows]
    try:
        return np.array(cells, dtype=np.float64).reshape(len(rows), len(columns))
    except ValueError:
        pass
    out = np.empty((len(rows), len(columns)), np.float64)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            try:
                out[r, c] = float(cell)
            except ValueError:
                col = header[columns[c]]
                where = f"{p} line {lines[r]} (data row {r + 1}), column {col!r}"
                if not cell.strip():
                    raise BackflipValueError(
                        f"{where} is empty; every feature needs a number. Fill it in or drop "
                        "that row."
                    ) from None
                hint = ("" if has_label else
                        f" If {col!r} holds the labels, pass label_column={col!r} (CLI "
                        f"--label-column {col}).")
                raise BackflipValueError(
                    f"{where}: {cell!r} is not a number; every column but the label column "
                    f"{label_column!r} must be numeric.{hint}"
                ) from None
    return out


def _labels(p: Path, values: list[str], lines: list[int], label_column: str
            ) -> tuple[np.ndarray, list[str] | None]:
    """int64 labels, float labels (kept, for check_dataset to refuse), or names -> 0..K-1."""
    values = [v.strip() for v in values]
    for r, v in enumerate(values):
        if not v:
            raise BackflipValueError(
                f"{p} line {lines[r]} (data row {r + 1}) has an empty label in column "
                f"{label_column!r}; every sample needs a label. Drop that row, or leave the "
                "label column out for unlabelled data."
            )
    try:
        return np.array([int(v) for v in values], dtype=np.int64), None
    except ValueError:
        pass
    try:
        return np.array([float(v) for v in values], dtype=np.float64), None
    except ValueError:
        pass
    classes = sorted(set(values))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v] for v in values], dtype=np.int64), classes


def read_csv(path: str | os.PathLike[str], *, label_column: str = "label",
             name: str | None = None) -> ArrayDataset:
    """Read a CSV with a header row: one row per sample, numeric feature columns.

    The column ``label_column`` becomes ``y``: integers as int64; class names mapped to
    ``0..K-1`` in sorted order (the names in ``origin["classes"]``); other numbers kept
    as floats (which :func:`check_dataset` refuses). Without that column the set is
    unlabelled and ``origin`` records the columns found. Every other column must be
    numeric; ``x`` is float32 ``(N, D)`` in the file's column order.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "flowers.csv")
    >>> _ = Path(path).write_text("width,height,label\\n1.5,2,rose\\n0.5,1,iris\\n")
    >>> ds = read_csv(path)
    >>> ds.x.tolist(), ds.y.tolist(), ds.origin["classes"]
    ([[1.5, 2.0], [0.5, 1.0]], [1, 0], ['iris', 'rose'])
    >>> tmp.cleanup()
    """
    p = _file(path, "read_csv")
    header, rows, lines = _csv_rows(p)
    _check_header(p, header)
    has_label = label_column in header
    columns = [j for j, c in enumerate(header) if c != label_column]
    if not columns:
        raise BackflipValueError(f"{p} has no feature columns besides the label column "
                                 f"{label_column!r}.")
    x = _features(p, header, rows, lines, columns, label_column, has_label)
    origin = _origin("csv", p, columns=list(header), label_column=label_column)
    y, num_classes = None, None
    if has_label:
        li = header.index(label_column)
        y, classes = _labels(p, [row[li] for row in rows], lines, label_column)
        if classes is not None:
            origin["classes"], num_classes = classes, len(classes)
    return ArrayDataset(x.astype(np.float32), y, num_classes, name or p.stem, origin=origin)


def _pil() -> Any:
    return require("PIL.Image", purpose="reading a folder of images")


def _check_size(size: object) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, int | np.integer) else size
    if (not isinstance(pair, tuple | list) or len(pair) != 2
            or any(isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1
                   for n in pair)):
        raise BackflipValueError(
            f"size must be None (keep the images' own size), an int N >= 1 (N x N) or a pair "
            f"(H, W); got {size!r}."
        )
    return int(pair[0]), int(pair[1])


def _spread(n: int, limit: int | None) -> np.ndarray:
    """``limit`` indices evenly spaced over ``range(n)`` (all of them if ``limit`` is None)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.arange(limit) * n // limit


def _check_limit(limit: object) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | np.integer)
                              or limit < 1):
        raise BackflipValueError(f"limit must be None (all samples) or an int >= 1; got {limit!r}.")


class ImageFolder:
    """A map-style data set over ``root/<class>/<image>``, read with Pillow on access.

    The layout of torchvision's ``ImageFolder``: one sub-folder per class (``classes``
    are their sorted names, class ``i`` is ``classes[i]``), image files
    (:data:`IMAGE_EXTENSIONS`, any case) anywhere below it, sorted by path; hidden
    entries and other files are skipped. ``ds[i]`` is ``(x, label)`` with ``x`` float32
    ``(C, H, W)`` in ``[0, 1]``, which is what a torch ``DataLoader`` calls (the object
    holds only paths and labels, so it pickles cheaply to worker processes).

    ``channels``: 1 (grey) or 3 (RGB; alpha dropped, palettes expanded); ``None`` picks 1
    if every image is grey (Pillow modes ``1``, ``L``, ``LA``, ``I``, ``I;16``, ``F``),
    else 3. ``size``: ``None`` needs every image the same size; ``N`` or ``(H, W)``
    resizes each image (bilinear). With ``size`` or ``channels`` left ``None`` the image
    headers are read when the folder is built (that is also where an unreadable file is
    found); otherwise nothing is opened until an image is read.

    >>> import tempfile
    >>> from PIL import Image
    >>> tmp = tempfile.TemporaryDirectory()
    >>> for cls in ("cat", "dog"):
    ...     os.mkdir(os.path.join(tmp.name, cls))
    ...     Image.new("L", (5, 4), 255).save(os.path.join(tmp.name, cls, "1.png"))
    >>> ds = ImageFolder(tmp.name)
    >>> ds.classes, len(ds), ds.shape, ds.y.tolist()
    (['cat', 'dog'], 2, (1, 4, 5), [0, 1])
    >>> x, label = ds[1]
    >>> x.shape, x.dtype.name, float(x.max()), label
    ((1, 4, 5), 'float32', 1.0, 1)
    >>> ds.to_arrays().x.shape
    (2, 1, 4, 5)
    >>> tmp.cleanup()
    """

    labelled: bool = True

    def __init__(self, root: str | os.PathLike[str], *, size: int | tuple[int, int] | None = None,
                 channels: int | None = None, name: str | None = None) -> None:
        image = _pil()
        if not isinstance(root, str | os.PathLike):
            raise BackflipTypeError(f"ImageFolder needs a folder path; got {type(root).__name__}.")
        path = Path(root).expanduser()
        if not path.is_dir():
            what = "is a file" if path.exists() else "does not exist"
            raise BackflipValueError(
                f"ImageFolder: {path.absolute()} {what}; it needs a folder with one sub-folder "
                "of images per class (root/<class>/<image>.png)."
            )
        if channels is not None and (isinstance(channels, bool) or channels not in (1, 3)):
            raise BackflipValueError(
                f"channels must be None (1 if every image is grey, else 3), 1 or 3; got "
                f"{channels!r}."
            )
        self.root: str = str(path.resolve())
        self._resize = _check_size(size)
        self.classes, self.files, labels = _scan(path)
        self._y = labels
        self._y.flags.writeable = False
        self.name: str = name or path.resolve().name
        self.origin: dict[str, Any] = {"form": "folder", "path": self.root,
                                       "classes": list(self.classes)}
        if channels is None or self._resize is None:
            modes, sizes = self._headers(image)
        if channels is None:
            channels = 1 if all(m in _GREY_MODES for m in modes) else 3
        self.channels: int = int(channels)
        if self._resize is None:
            first = sizes[0]
            for rel, wh in zip(self.files, sizes, strict=True):
                if wh != first:
                    raise BackflipValueError(
                        f"the images in {self.root} have different sizes: {self.files[0]} is "
                        f"{first[1]}x{first[0]} (HxW) but {rel} is {wh[1]}x{wh[0]}; pass "
                        "size=N (CLI --image-size N) to resize every image to NxN, or "
                        "size=(H, W)."
                    )
            hw = (first[1], first[0])
        else:
            hw = self._resize
        self.shape: tuple[int, int, int] = (self.channels, *hw)

    def _headers(self, image: Any) -> tuple[list[str], list[tuple[int, int]]]:
        modes, sizes = [], []
        for rel in self.files:
            file = os.path.join(self.root, rel)
            try:
                with image.open(file) as im:
                    modes.append(im.mode)
                    sizes.append(im.size)
            except (OSError, ValueError, SyntaxError, EOFError) as err:
                raise _bad_image(file, err) from None
        return modes, sizes

    @property
    def num_classes(self) -> int:
        """The number of class sub-folders."""
        return len(self.classes)

    @property
    def y(self) -> np.ndarray:
        """int64 labels of every sample (read-only), known without reading any pixels."""
        return self._y

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        shown = self.classes[:5] + (["..."] if len(self.classes) > 5 else [])
        return (f"ImageFolder(name={self.name!r}, n={len(self)}, shape={self.shape}, "
                f"classes={shown})")

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise BackflipTypeError(f"ImageFolder index must be an int; got {type(i).__name__}.")
        n = len(self.files)
        if not -n <= i < n:
            raise IndexError(f"ImageFolder index {i} is out of range for {n} images.")
        i = int(i) % n
        return self._read(i), int(self._y[i])

    def _read(self, i: int) -> np.ndarray:
        file = os.path.join(self.root, self.files[i])
        image = _pil()
        try:
            with image.open(file) as im:
                x = _pixels(image, im, self.channels, self._resize)
        except (OSError, ValueError, SyntaxError, EOFError) as err:
            raise _bad_image(file, err) from None
        if x.shape != self.shape:
            raise BackflipValueError(
                f"the image {file} is {x.shape[1]}x{x.shape[2]} (HxW) but the folder's images "
                f"are {self.shape[1]}x{self.shape[2]} (did it change since the folder was "
                "read?); pass size=N (CLI --image-size N) to resize every image."
            )
        return x

    def _subset(self, indices: np.ndarray) -> ImageFolder:
        """A copy over ``files[indices]`` (same classes, shape and origin)."""
        new = object.__new__(ImageFolder)
        new.__dict__.update(self.__dict__)
        new.files = [self.files[int(i)] for i in indices]
        new._y = self._y[indices].copy()
        new._y.flags.writeable = False
        return new

    def to_arrays(self, limit: int | None = None) -> ArrayDataset:
        """Read the images into one in-memory :class:`ArrayDataset` (same values as ``ds[i]``).

        ``limit`` keeps that many samples evenly spaced over the sorted files, so every
        class keeps its share.
        """
        _check_limit(limit)
        indices = _spread(len(self), limit)
        x = np.empty((len(indices), *self.shape), np.float32)
        for k, i in enumerate(indices):
            x[k] = self._read(int(i))
        return ArrayDataset(x, self._y[indices].copy(), self.num_classes, self.name,
                            origin=dict(self.origin, classes=list(self.classes)))


def _bad_image(file: str, err: BaseException) -> BackflipValueError:
    return BackflipValueError(
        f"cannot read the image {file} ({err}); it may be corrupt or not an image. Replace it "
        "or move it out of the folder."
    )


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _scan(root: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Sorted class names, image paths relative to root (posix) and their labels."""
    entries = sorted(e for e in os.listdir(root) if _visible(e))
    stray = [e for e in entries if (root / e).is_file() and e.lower().endswith(IMAGE_EXTENSIONS)]
    if stray:
        raise BackflipValueError(
            f"{root.resolve()} has image files directly in it ({', '.join(stray[:3])}"
            f"{', ...' if len(stray) > 3 else ''}); ImageFolder needs one sub-folder per class "
            "with the images inside: root/<class>/<image>.png (e.g. root/cat/1.png)."
        )
    classes = [e for e in entries if (root / e).is_dir()]
    if not classes:
        raise BackflipValueError(
            f"{root.resolve()} has no class sub-folders; ImageFolder needs one sub-folder per "
            "class with the images inside: root/<class>/<image>.png (e.g. root/cat/1.png)."
        )
    files: list[str] = []
    labels: list[int] = []
    for k, cls in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / cls):
            dirnames[:] = sorted(d for d in dirnames if _visible(d))
            rel = Path(dirpath).relative_to(root).as_posix()
            found += [f"{rel}/{f}" for f in filenames
                      if _visible(f) and f.lower().endswith(IMAGE_EXTENSIONS)]
        if not found:
            raise BackflipValueError(
                f"the class folder {cls!r} in {root.resolve()} has no images (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder."
            )
        files += sorted(found)
        labels += [k] * len(found)
    return classes, files, np.array(labels, np.int64)


def _pixels(image: Any, im: Any, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """float32 (C, H, W) of an open Pillow image: 8-bit / 255, 16/32-bit integer / 65535."""
    wide = im.mode in ("I", "F") or im.mode.startswith("I;16")
    if wide:
        scale = np.float32(1.0 if im.mode == "F" else 65535.0)
        im = im.convert("F")  # grey; RGB below repeats it
    else:
        scale = np.float32(255.0)
        im = im.convert("L" if channels == 1 else "RGB")
    if size is not None and (im.height, im.width) != size:
        im = im.resize((size[1], size[0]), image.Resampling.BILINEAR)
    x = np.asarray(im, np.float32) / scale
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    if x.shape[0] != channels:
        x = np.repeat(x, channels, axis=0)
    return np.ascontiguousarray(x)


def fingerprint(ds: ArrayDataset | ImageFolder) -> str:
    """A sha256 hex digest of a data set's content; it changes whenever any value does.

    An :class:`ArrayDataset`: ``x``'s shape, dtype and bytes, then ``y``'s (or the
    absence of labels). An :class:`ImageFolder`: each image's relative path and file
    bytes, in order (the file content, independent of ``size`` and ``channels``).

    >>> a = ArrayDataset(np.zeros((2, 2), np.float32), np.array([0, 1]))
    >>> b = ArrayDataset(np.zeros((2, 2), np.float32), np.array([1, 0]))
    >>> len(fingerprint(a)), fingerprint(a) == fingerprint(b)
    (64, False)
    """
    h = hashlib.sha256()

    def chunk(data: bytes | memoryview) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    if isinstance(ds, ArrayDataset):
        h.update(b"backflip.ArrayDataset/1")
        for key, arr in (("x", ds.x), ("y", ds.y)):
            if arr is None:
                chunk(f"{key}:none".encode())
                continue
            arr = np.ascontiguousarray(arr)
            chunk(f"{key}:{arr.dtype.str}:{arr.shape}".encode())
            chunk(memoryview(arr).cast("B"))
        return h.hexdigest()
    if isinstance(ds, ImageFolder):
        h.update(b"backflip.ImageFolder/1")
        for rel, label in zip(ds.files, ds.y.tolist(), strict=True):
            chunk(f"{rel}:{label}".encode())
            chunk(Path(ds.root, rel).read_bytes())
        return h.hexdigest()
    raise BackflipTypeError(f"fingerprint needs an ArrayDataset or ImageFolder; got "
                            f"{type(ds).__name__}.")


def describe(ds: ArrayDataset | ImageFolder) -> dict[str, Any]:
    """A JSON-safe record of a data set, for a run's results: where it came from and its hash.

    ``{"name", "form", "path", "n", "shape", "num_classes", "labelled", "classes",
    "sha256"}``; ``shape`` is one sample's (``[C, H, W]`` or ``[D]``), ``path`` and
    ``classes`` are ``None`` where unknown, ``sha256`` is :func:`fingerprint`.

    >>> d = describe(ArrayDataset(np.zeros((3, 2), np.float32), np.array([0, 1, 1]), 2, "toy"))
    >>> {k: d[k] for k in ("name", "form", "path", "n", "shape", "num_classes", "labelled")}
    {'name': 'toy', 'form': 'arrays', 'path': None, 'n': 3, 'shape': [2], 'num_classes': 2, 'labelled': True}
    """
    if isinstance(ds, ArrayDataset):
        shape = [int(n) for n in ds.x.shape[1:]]
    elif isinstance(ds, ImageFolder):
        shape = [int(n) for n in ds.shape]
    else:
        raise BackflipTypeError(f"describe needs an ArrayDataset or ImageFolder; got "
                                f"{type(ds).__name__}.")
    origin = ds.origin or {}
    classes = origin.get("classes")
    return {
        "name": str(ds.name),
        "form": str(origin.get("form", "arrays")),
        "path": None if origin.get("path") is None else str(origin["path"]),
        "n": len(ds),
        "shape": shape,
        "num_classes": None if ds.num_classes is None else int(ds.num_classes),
        "labelled": bool(ds.labelled),
        "classes": None if classes is None else [str(c) for c in classes],
        "sha256": fingerprint(ds),
    }


def open_dataset(spec: str | os.PathLike[str], *, split: str = "train",
                 root: str | os.PathLike[str] | None = None, seed: int = 0,
                 limit: int | None = None, label_column: str = "label",
                 image_size: int | tuple[int, int] | None = None, channels: int | None = None,
                 stream: bool = False) -> ArrayDataset | ImageFolder:
    """Open a data set from a built-in name or a path; the one entry point for every form.

    * a name in :data:`DATASETS`: :func:`load` ``(spec, split, root=, seed=, limit=)``
      (a built-in name wins over a file of the same name);
    * ``.npz`` (:func:`read_npz`), ``.npy`` (:func:`read_npy`), ``.csv``
      (:func:`read_csv` with ``label_column``);
    * a folder of class sub-folders: :class:`ImageFolder` with ``image_size`` and
      ``channels``, read into memory (``stream=False``) or returned as it is to be read
      image by image (``stream=True``).

    Files have no splits: ``split``, ``root`` and ``seed`` apply to built-ins only; pass
    the test set as its own path. ``limit`` keeps the first ``limit`` rows of a file, and
    for a folder ``limit`` images evenly spaced over the sorted files (so every class
    keeps its share). ``image_size`` and ``channels`` apply to folders only (use
    :func:`resize`, :func:`to_rgb`, :func:`to_grey` on arrays).

    >>> open_dataset("moons", limit=3).origin
    {'form': 'builtin', 'name': 'moons'}
    >>> open_dataset("moonz")
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: unknown data set 'moonz': not a built-in name and no file or folder .../moonz. A data set is a built-in name (moons, moons-rotated, ..., uci-digits; did you mean 'moons'?), a .npz file ...
    """
    _check_limit(limit)
    if isinstance(spec, str) and spec in DATASETS:
        ds = load(spec, split, root=root, seed=seed, limit=limit)
        return dataclasses.replace(ds, origin={"form": "builtin", "name": spec})
    if not isinstance(spec, str | os.PathLike):
        raise BackflipTypeError(f"open_dataset needs a data set name or a path; got "
                                f"{type(spec).__name__}. A data set is {_forms()}.")
    path = Path(spec).expanduser()
    if not path.exists():
        close = difflib.get_close_matches(str(spec), DATASETS, n=1)
        forms = _forms()
        if close:
            forms = forms.replace(")", f"; did you mean {close[0]!r}?)", 1)
        raise BackflipValueError(
            f"unknown data set {str(spec)!r}: not a built-in name and no file or folder "
            f"{path.absolute()}. A data set is {forms}."
        )
    if path.is_dir():
        folder = ImageFolder(path, size=image_size, channels=channels)
        if stream:
            return folder if limit is None else folder._subset(_spread(len(folder), limit))
        return folder.to_arrays(limit)
    readers = {".npz": read_npz, ".npy": read_npy}
    suffix = path.suffix.lower()
    if suffix == ".csv":
        ds = read_csv(path, label_column=label_column)
    elif suffix in readers:
        ds = readers[suffix](path)
    else:
        raise BackflipValueError(
            f"cannot open {path.absolute()} as a data set: backflip does not read "
            f"{'the suffix ' + repr(path.suffix) if path.suffix else 'files without a suffix'}. "
            f"A data set is {_forms()}."
        )
    if limit is None or limit >= len(ds):
        return ds
    return dataclasses.replace(ds, x=ds.x[:limit], y=None if ds.y is None else ds.y[:limit])
