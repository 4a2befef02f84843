"""The user's own data: .npz / .npy / .csv files, image folders, open_dataset, fingerprints."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from backflip import BackflipTypeError, BackflipValueError
from backflip.data import (
    ArrayDataset,
    ImageFolder,
    check_batch_size,
    check_compatible,
    check_dataset,
    describe,
    fingerprint,
    load,
    open_dataset,
    read_csv,
    read_npy,
    read_npz,
    to_grey,
)

Image = pytest.importorskip("PIL.Image")


# --- .npz and .npy ---------------------------------------------------------------------------

def test_read_npz_round_trip(tmp_path):
    x = np.random.default_rng(0).random((5, 1, 4, 4), dtype=np.float32)
    y = np.array([0, 2, 1, 2, 0])
    np.savez(tmp_path / "src.npz", x=x, y=y)
    ds = read_npz(tmp_path / "src.npz")
    np.testing.assert_array_equal(ds.x, x)
    assert ds.x.dtype == np.float32 and ds.y.tolist() == y.tolist()
    assert ds.num_classes == 3 and ds.name == "src" and ds.labelled
    assert ds.origin == {"form": "npz", "path": str((tmp_path / "src.npz").resolve())}
    assert check_dataset(ds) is ds
    assert read_npz(tmp_path / "src.npz", name="mine").name == "mine"


def test_read_npz_scales_uint8_and_keeps_labels_as_stored(tmp_path):
    x = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3) * 51
    np.savez(tmp_path / "a.npz", x=x, y=np.array([1.0, 0.0]), num_classes=np.int64(4))
    ds = read_npz(tmp_path / "a.npz")
    np.testing.assert_array_equal(ds.x, x.astype(np.float32) / np.float32(255))
    assert float(ds.x.max()) == 1.0
    assert ds.y.dtype == np.float64 and ds.num_classes == 4  # check_dataset judges the labels
    with pytest.raises(BackflipTypeError, match=r"must be integers; got float64\. They are all "
                                                r"whole numbers: pass y\.astype\(np\.int64\)"):
        check_dataset(ds)
    np.savez(tmp_path / "f64.npz", x=np.full((2, 2), 0.5))
    assert read_npz(tmp_path / "f64.npz").x.dtype == np.float32


def test_read_npz_without_y_is_unlabelled(tmp_path):
    np.savez(tmp_path / "t.npz", x=np.zeros((3, 2), np.float32))
    ds = read_npz(tmp_path / "t.npz")
    assert ds.y is None and ds.num_classes is None and not ds.labelled
    check_dataset(ds, "target", labels=False)
    with pytest.raises(BackflipValueError, match=r"the target data set 't' has no labels; method "
                                                 r"target-only .* which has no key 'y'"):
        check_dataset(ds, "target")


def test_read_npz_errors(tmp_path):
    np.savez(tmp_path / "keras.npz", x_train=np.zeros((2, 2)), y_train=np.zeros(2))
    with pytest.raises(BackflipValueError,
                       match=r"keras\.npz has no array 'x' \(keys found: x_train, y_train\); "
                             r"read_npz needs x \(samples\) and optionally y"):
        read_npz(tmp_path / "keras.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(BackflipValueError,
                       match=r"obj\.npz cannot be read: its array 'x' holds pickled \(object\) "
                             r"data, which backflip does not load \(allow_pickle=False"):
        read_npz(tmp_path / "obj.npz")
    (tmp_path / "pickled.npz").write_bytes(pickle.dumps({"x": [1, 2]}))
    with pytest.raises(BackflipValueError, match=r"pickled\.npz cannot be read: it holds pickled"):
        read_npz(tmp_path / "pickled.npz")
    (tmp_path / "junk.npz").write_bytes(b"hello, not numpy")
    with pytest.raises(BackflipValueError, match=r"junk\.npz is not a NumPy \.npz file \(it "
                                                 r"starts with b'hello,'\)"):
        read_npz(tmp_path / "junk.npz")
    good = (tmp_path / "good.npz")
    np.savez(good, x=np.zeros((50, 50)))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:200])
    with pytest.raises(BackflipValueError, match=r"cut\.npz cannot be read \(.*\); it may be "
                                                 r"truncated or corrupt"):
        read_npz(tmp_path / "cut.npz")
    np.save(tmp_path / "single.npy", np.zeros(2))
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    with pytest.raises(BackflipValueError, match=r"is a single \.npy array, not an \.npz archive; "
                                                 r"read it with read_npy"):
        read_npz(tmp_path / "single.npz")
    np.savez(tmp_path / "k.npz", x=np.zeros((2, 2)), num_classes=np.array([2, 3]))
    with pytest.raises(BackflipValueError, match=r"num_classes in .*k\.npz must be one integer"):
        read_npz(tmp_path / "k.npz")
    np.savez(tmp_path / "s.npz", x=np.array(["a", "b"]))
    with pytest.raises(BackflipTypeError, match=r"x in .*s\.npz has dtype <U1; backflip needs "
                                                r"real numbers"):
        read_npz(tmp_path / "s.npz")
    with pytest.raises(BackflipValueError, match=r"read_npz: no such file .*missing\.npz"):
        read_npz(tmp_path / "missing.npz")
    with pytest.raises(BackflipValueError, match=r"read_npz: .* is a folder, not a file"):
        read_npz(tmp_path)


def test_read_npy(tmp_path):
    x = np.random.default_rng(1).random((4, 3))
    np.save(tmp_path / "tgt.npy", x)
    ds = read_npy(tmp_path / "tgt.npy")
    np.testing.assert_array_equal(ds.x, x.astype(np.float32))
    assert ds.y is None and not ds.labelled and ds.name == "tgt"
    assert ds.origin == {"form": "npy", "path": str((tmp_path / "tgt.npy").resolve())}
    with pytest.raises(BackflipValueError, match=r"a \.npy holds x only"):
        check_dataset(ds)
    with open(tmp_path / "zip.npy", "wb") as f:  # a file object keeps the .npy name
        np.savez(f, x=x)
    with pytest.raises(BackflipValueError, match=r"is an \.npz archive, not a \.npy array"):
        read_npy(tmp_path / "zip.npy")
    np.save(tmp_path / "o.npy", np.array([None], dtype=object), allow_pickle=True)
    with pytest.raises(BackflipValueError, match=r"o\.npy cannot be read: it holds pickled"):
        read_npy(tmp_path / "o.npy")


# --- .csv ------------------------------------------------------------------------------------

def _write(path, text):
    path.write_text(text)
    return path


def test_read_csv_integer_labels(tmp_path):
    p = _write(tmp_path / "s.csv", "a,b,label\n0.5,1,2\n-1,2e3,0\n\n3, 4 ,1\n")
    ds = read_csv(p)
    assert ds.x.dtype == np.float32 and ds.x.tolist() == [[0.5, 1], [-1, 2000], [3, 4]]
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [2, 0, 1] and ds.num_classes == 3
    assert ds.origin == {"form": "csv", "path": str(p.resolve()), "columns": ["a", "b", "label"],
                         "label_column": "label"}
    check_dataset(ds)


def test_read_csv_label_column_anywhere_and_named_classes(tmp_path):
    p = _write(tmp_path / "f.csv", "species,w,h\nrose,1,2\niris,3,4\ntulip,5,6\niris,7,8\n")
    ds = read_csv(p, label_column="species", name="flowers")
    assert ds.x.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert ds.origin["classes"] == ["iris", "rose", "tulip"]
    assert ds.y.tolist() == [1, 0, 2, 0] and ds.num_classes == 3 and ds.name == "flowers"


def test_read_csv_float_labels_are_kept_for_check_dataset(tmp_path):
    ds = read_csv(_write(tmp_path / "r.csv", "a,label\n1,0.25\n2,3.5\n"))
    assert ds.y.dtype == np.float64 and ds.y.tolist() == [0.25, 3.5]
    with pytest.raises(BackflipTypeError, match=r"look like regression targets or probabilities"):
        check_dataset(ds)


def test_read_csv_without_the_label_column(tmp_path):
    p = _write(tmp_path / "t.csv", "a,b,class\n1,2,0\n3,4,1\n")
    ds = read_csv(p)
    assert ds.y is None and ds.x.shape == (2, 3)
    assert ds.origin["columns"] == ["a", "b", "class"] and ds.origin["label_column"] == "label"
    with pytest.raises(BackflipValueError,
                       match=r"the source data set 't' has no labels; .* It was read from "
                             r".*t\.csv, which has no column 'label' \(columns: a, b, class\); "
                             r"name the label column with label_column= \(CLI --label-column "
                             r"NAME\)\."):
        check_dataset(ds)
    assert read_csv(p, label_column="class").y.tolist() == [0, 1]


@pytest.mark.parametrize(("text", "match"), [
    ("a,b,label\n1,2,0\n3,x,1\n",
     r"line 3 \(data row 2\), column 'b': 'x' is not a number; every column but the label "
     r"column 'label' must be numeric\.$"),
    ("a,b,label\n1,2,0\n3,,1\n", r"line 3 \(data row 2\), column 'b' is empty; every feature "
                                 r"needs a number"),
    ("a,kind\n1,cat\n2,dog\n", r"line 2 \(data row 1\), column 'kind': 'cat' is not a number; "
                               r".* If 'kind' holds the labels, pass label_column='kind' \(CLI "
                               r"--label-column kind\)"),
    ("a,label\n1,0\n2,\n", r"line 3 \(data row 2\) has an empty label in column 'label'"),
    ("a,b,label\n1,2,0\n1,2\n", r"line 3 \(data row 2\) has 2 cells but the header has 3 columns"),
    ("1,2,3\n4,5,6\n", r"the first row of .* is all numbers \(1, 2, 3, \.\.\.\), not column names; "
                       r"read_csv needs a header row"),
    (",a,label\n0,1,1\n", r"column 1 of the header of .* has no name \(a pandas index\? write it "
                          r"with df\.to_csv\(path, index=False\)\)"),
    ("a,a,label\n1,2,0\n", r"has the column names \['a'\] more than once"),
    ("", r"is empty; read_csv needs a header row"),
    ("label\n0\n", r"has no feature columns besides the label column 'label'"),
])
def test_read_csv_errors(tmp_path, text, match):
    with pytest.raises(BackflipValueError, match=match):
        read_csv(_write(tmp_path / "bad.csv", text))


def test_read_csv_not_utf8(tmp_path):
    (tmp_path / "l.csv").write_bytes(b"a,label\n\xff\xfe,1\n")
    with pytest.raises(BackflipValueError, match=r"is not UTF-8 text"):
        read_csv(tmp_path / "l.csv")


def test_read_csv_non_finite_cells_reach_check_dataset(tmp_path):
    ds = read_csv(_write(tmp_path / "n.csv", "a,label\n1,0\nnan,1\ninf,0\n"))
    with pytest.raises(BackflipValueError, match=r"has 2 non-finite values \(NaN or inf\), the "
                                                 r"first in sample 1"):
        check_dataset(ds)


# --- image folders ---------------------------------------------------------------------------

def _grey(rng, h=8, w=8):
    return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")


def _colour(rng, h=12, w=10, mode="RGB"):
    return Image.fromarray(rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8), mode)


@pytest.fixture
def grey_folder(tmp_path):
    """Three classes of 8x8 grey PNGs: 'a' 2 images, 'b' 3, 'c' 1."""
    rng = np.random.default_rng(0)
    root = tmp_path / "grey"
    for cls, n in (("b", 3), ("a", 2), ("c", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            _grey(rng).save(root / cls / f"{i}.png")
    (root / "a" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


@pytest.fixture
def colour_folder(tmp_path):
    """Two classes of 12x10 (HxW) colour images, one of them RGBA, one a .JPG-cased PNG."""
    rng = np.random.default_rng(1)
    root = tmp_path / "colour"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    _colour(rng).save(root / "cat" / "1.png")
    _colour(rng, mode="RGBA").save(root / "cat" / "2.png")
    _colour(rng).save(root / "dog" / "1.PNG")
    _grey(rng, 12, 10).save(root / "dog" / "2.png")
    return root


def _manual(path, mode):
    with Image.open(path) as im:
        x = np.asarray(im.convert(mode), np.float32) / 255
    return x[None] if x.ndim == 2 else x.transpose(2, 0, 1)


def test_image_folder_grey(grey_folder):
    ds = ImageFolder(grey_folder)
    assert ds.classes == ["a", "b", "c"] and ds.num_classes == 3 and len(ds) == 6
    assert ds.files == ["a/0.png", "a/1.png", "b/0.png", "b/1.png", "b/2.png", "c/0.png"]
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [0, 0, 1, 1, 1, 2]
    assert ds.shape == (1, 8, 8) and ds.channels == 1 and ds.labelled and ds.name == "grey"
    assert ds.origin == {"form": "folder", "path": str(grey_folder.resolve()),
                         "classes": ["a", "b", "c"]}
    x, label = ds[3]
    assert x.dtype == np.float32 and x.shape == (1, 8, 8) and label == 1
    np.testing.assert_array_equal(x, _manual(grey_folder / "b" / "1.png", "L"))
    arrays = ds.to_arrays()
    assert isinstance(arrays, ArrayDataset) and arrays.x.shape == (6, 1, 8, 8)
    for i, rel in enumerate(ds.files):
        np.testing.assert_array_equal(arrays.x[i], _manual(grey_folder / rel, "L"))
        np.testing.assert_array_equal(arrays.x[i], ds[i][0])
    assert arrays.y.tolist() == ds.y.tolist() and arrays.num_classes == 3
    assert arrays.origin["form"] == "folder" and arrays.origin["classes"] == ["a", "b", "c"]
    assert check_dataset(arrays) is arrays and check_dataset(ds) is ds
    assert ds[-1][1] == 2
    with pytest.raises(IndexError, match=r"index 6 is out of range for 6 images"):
        ds[6]
    with pytest.raises(BackflipTypeError, match=r"index must be an int; got str"):
        ds["0"]


def test_image_folder_colour_rgba_and_channels(colour_folder):
    ds = ImageFolder(colour_folder)
    assert ds.shape == (3, 12, 10) and ds.channels == 3  # any colour image makes it RGB
    assert ds.files == ["cat/1.png", "cat/2.png", "dog/1.PNG", "dog/2.png"]
    arrays = ds.to_arrays()
    for i, rel in enumerate(ds.files):
        np.testing.assert_array_equal(arrays.x[i], _manual(colour_folder / rel, "RGB"))
    # the RGBA image loses its alpha; the grey one is repeated on three channels
    np.testing.assert_array_equal(arrays.x[3, 0], arrays.x[3, 2])
    grey = ImageFolder(colour_folder, channels=1)
    assert grey.shape == (1, 12, 10)
    np.testing.assert_array_equal(grey[0][0], _manual(colour_folder / "cat" / "1.png", "L"))
    rgb = ImageFolder(colour_folder.parent / "colour", channels=3, size=12)
    assert rgb.shape == (3, 12, 12)
    with pytest.raises(BackflipValueError, match=r"channels must be None .*, 1 or 3; got 4"):
        ImageFolder(colour_folder, channels=4)


def test_image_folder_forced_rgb_on_grey(grey_folder):
    ds = ImageFolder(grey_folder, channels=3)
    x = ds[0][0]
    assert x.shape == (3, 8, 8)
    np.testing.assert_array_equal(x, _manual(grey_folder / "a" / "0.png", "RGB"))


def test_image_folder_sixteen_bit_grey(tmp_path):
    (tmp_path / "k").mkdir()
    pixels = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    Image.fromarray(pixels).save(tmp_path / "k" / "0.png")
    ds = ImageFolder(tmp_path)
    assert ds.shape == (1, 4, 4)
    np.testing.assert_allclose(ds[0][0][0], pixels / 65535, rtol=1e-6)


def test_image_folder_mixed_sizes(tmp_path):
    rng = np.random.default_rng(2)
    for cls in ("x", "y"):
        (tmp_path / cls).mkdir()
    _grey(rng, 8, 8).save(tmp_path / "x" / "0.png")
    _grey(rng, 12, 10).save(tmp_path / "y" / "0.png")
    with pytest.raises(BackflipValueError,
                       match=r"have different sizes: x/0\.png is 8x8 \(HxW\) but y/0\.png is "
                             r"12x10; pass size=N \(CLI --image-size N\) to resize every image "
                             r"to NxN, or size=\(H, W\)\."):
        ImageFolder(tmp_path)
    ds = ImageFolder(tmp_path, size=16)
    assert ds.shape == (1, 16, 16) and ds.to_arrays().x.shape == (2, 1, 16, 16)
    with Image.open(tmp_path / "y" / "0.png") as im:
        want = np.asarray(im.convert("L").resize((16, 16), Image.Resampling.BILINEAR),
                          np.float32) / 255
    np.testing.assert_array_equal(ds[1][0][0], want)
    ds = ImageFolder(tmp_path, size=(6, 9))
    assert ds.shape == (1, 6, 9) and ds[0][0].shape == (1, 6, 9)
    for bad in (0, (3,), (2, 0), 2.5, True):
        with pytest.raises(BackflipValueError, match=r"size must be None .* an int N >= 1"):
            ImageFolder(tmp_path, size=bad)


def test_image_folder_layout_errors(tmp_path, grey_folder):
    with pytest.raises(BackflipValueError, match=r"ImageFolder: .*nowhere does not exist; it needs "
                                                 r"a folder with one sub-folder of images per "
                                                 r"class"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(BackflipValueError, match=r"file\.txt is a file"):
        ImageFolder(tmp_path / "file.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackflipValueError, match=r"empty has no class sub-folders; ImageFolder "
                                                 r"needs one sub-folder per class"):
        ImageFolder(empty)
    (grey_folder / "d").mkdir()
    (grey_folder / "d" / "readme.md").write_text("")
    with pytest.raises(BackflipValueError, match=r"the class folder 'd' in .* has no images "
                                                 r"\(looked for \.bmp, \.gif"):
        ImageFolder(grey_folder)
    flat = tmp_path / "flat"
    flat.mkdir()
    _grey(np.random.default_rng(0)).save(flat / "0.png")
    _grey(np.random.default_rng(0)).save(flat / "1.JPG", format="PNG")
    with pytest.raises(BackflipValueError,
                       match=r"flat has image files directly in it \(0\.png, 1\.JPG\); "
                             r"ImageFolder needs one sub-folder per class with the images "
                             r"inside: root/<class>/<image>\.png"):
        ImageFolder(flat)


def test_image_folder_corrupt_image(grey_folder):
    (grey_folder / "b" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(BackflipValueError, match=r"cannot read the image .*b/bad\.png \(.*\); it "
                                                 r"may be corrupt or not an image\. Replace it"):
        ImageFolder(grey_folder)
    # with size and channels given, no header is read until the image is
    ds = ImageFolder(grey_folder, size=8, channels=1)
    i = ds.files.index("b/bad.png")
    with pytest.raises(BackflipValueError, match=r"cannot read the image .*b/bad\.png"):
        ds[i]
    good = (grey_folder / "a" / "0.png").read_bytes()
    (grey_folder / "b" / "bad.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(BackflipValueError, match=r"cannot read the image .*b/bad\.png"):
        ds[i]


def test_image_folder_pickles_cheaply(grey_folder):
    ds = ImageFolder(grey_folder)
    blob = pickle.dumps(ds)
    assert len(blob) < 2000
    back = pickle.loads(blob)
    assert back.classes == ds.classes and back.shape == ds.shape and len(back) == len(ds)
    np.testing.assert_array_equal(back[4][0], ds[4][0])
    assert back.y.tolist() == ds.y.tolist()


def test_image_folder_to_arrays_limit_spreads_over_classes(grey_folder):
    ds = ImageFolder(grey_folder)
    sub = ds.to_arrays(limit=3)
    assert sub.y.tolist() == [0, 1, 1]  # indices 0, 2, 4 of the sorted files
    np.testing.assert_array_equal(sub.x[1], ds[2][0])
    assert len(ds.to_arrays(limit=100)) == 6
    with pytest.raises(BackflipValueError, match=r"limit must be None \(all samples\) or an int"):
        ds.to_arrays(limit=0)


# --- open_dataset ----------------------------------------------------------------------------

def test_open_dataset_builtin():
    ds = open_dataset("moons", split="test", limit=4, seed=1)
    ref = load("moons", "test", seed=1, limit=4)
    np.testing.assert_array_equal(ds.x, ref.x)
    np.testing.assert_array_equal(ds.y, ref.y)
    assert ds.origin == {"form": "builtin", "name": "moons"}
    assert load("moons", limit=2).origin == {"form": "arrays"}  # the registry is untouched


def test_open_dataset_files(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.arange(10, dtype=np.float32).reshape(5, 2),
             y=np.array([0, 1, 0, 1, 1]))
    with open(tmp_path / "t.NPY", "wb") as f:  # np.save would append .npy to the name
        np.save(f, np.zeros((5, 2), np.float32))
    _write(tmp_path / "c.csv", "a,b,label\n1,2,0\n3,4,1\n5,6,1\n")
    ds = open_dataset(tmp_path / "s.npz", split="test")  # split is ignored for files
    assert ds.origin["form"] == "npz" and len(ds) == 5
    head = open_dataset(str(tmp_path / "s.npz"), limit=2)
    assert head.x.tolist() == [[0, 1], [2, 3]] and head.y.tolist() == [0, 1]
    assert head.origin == ds.origin and head.num_classes == 2
    t = open_dataset(tmp_path / "t.NPY", limit=3)
    assert t.origin["form"] == "npy" and len(t) == 3 and t.y is None
    c = open_dataset(tmp_path / "c.csv")
    assert c.origin["form"] == "csv" and c.y.tolist() == [0, 1, 1]
    assert open_dataset(tmp_path / "c.csv", label_column="b").y.tolist() == [2, 4, 6]


def test_open_dataset_folder(grey_folder):
    arrays = open_dataset(grey_folder)
    assert isinstance(arrays, ArrayDataset) and arrays.x.shape == (6, 1, 8, 8)
    assert arrays.origin["form"] == "folder"
    streamed = open_dataset(grey_folder, stream=True, image_size=10, channels=3)
    assert isinstance(streamed, ImageFolder) and streamed.shape == (3, 10, 10)
    few = open_dataset(grey_folder, stream=True, limit=3)
    assert isinstance(few, ImageFolder) and len(few) == 3
    assert few.files == ["a/0.png", "b/0.png", "b/2.png"] and few.y.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(few.to_arrays().x, open_dataset(grey_folder, limit=3).x)
    assert len(ImageFolder(grey_folder)) == 6  # the subset is a copy


def test_open_dataset_unknown(tmp_path):
    with pytest.raises(BackflipValueError,
                       match=r"unknown data set 'moonz': not a built-in name and no file or "
                             r"folder .*moonz\. A data set is a built-in name \(moons, "
                             r"moons-rotated, mnist, mnistm, syndigits, composite-zero, mfeat, "
                             r"pendigits, adult-male, adult-female, uci-digits; did you "
                             r"mean 'moons'\?\), a \.npz file with keys x and y \(no y: "
                             r"unlabelled\), a \.npy file of x \(unlabelled\), a \.csv file with "
                             r"a header row and a label column \(label_column=, CLI "
                             r"--label-column NAME\), or a folder with one sub-folder of images "
                             r"per class \(root/<class>/<image>\.png\)\.$"):
        open_dataset("moonz")
    with pytest.raises(BackflipValueError, match=r"no file or folder .*nothing\.npz\. A data set "
                                                 r"is a built-in name \(moons, [^;]*\), a \.npz"):
        open_dataset(tmp_path / "nothing.npz")
    _write(tmp_path / "data.txt", "1 2 3")
    with pytest.raises(BackflipValueError, match=r"cannot open .*data\.txt as a data set: backflip "
                                                 r"does not read the suffix '\.txt'\. A data set "
                                                 r"is a built-in name"):
        open_dataset(tmp_path / "data.txt")
    _write(tmp_path / "README", "")
    with pytest.raises(BackflipValueError, match=r"does not read files without a suffix"):
        open_dataset(tmp_path / "README")
    with pytest.raises(BackflipTypeError, match=r"needs a data set name or a path; got int"):
        open_dataset(3)
    with pytest.raises(BackflipValueError, match=r"limit must be None"):
        open_dataset(tmp_path / "data.txt", limit=-1)


# --- fingerprint and describe ----------------------------------------------------------------

def test_fingerprint_arrays_changes_with_any_value():
    x = np.random.default_rng(0).random((4, 1, 3, 3), dtype=np.float32)
    y = np.array([0, 1, 2, 0])
    base = fingerprint(ArrayDataset(x, y, 3, "a"))
    assert len(base) == 64 and int(base, 16) >= 0
    assert fingerprint(ArrayDataset(x.copy(), y.copy(), 5, "renamed")) == base  # content only
    x2 = x.copy()
    x2[2, 0, 1, 1] += 1e-3
    y2 = y.copy()
    y2[3] = 1
    others = {
        fingerprint(ArrayDataset(x2, y, 3, "a")),
        fingerprint(ArrayDataset(x, y2, 3, "a")),
        fingerprint(ArrayDataset(x, None, None, "a")),
        fingerprint(ArrayDataset(x.reshape(4, 1, 9, 1), y, 3, "a")),
        fingerprint(ArrayDataset(x.astype(np.float64), y, 3, "a")),
        fingerprint(ArrayDataset(x, y.astype(np.int32), 3, "a")),
    }
    assert base not in others and len(others) == 6
    # a non-contiguous view hashes like its contiguous copy
    t = np.asfortranarray(x)
    assert fingerprint(ArrayDataset(t, y, 3, "a")) == base
    with pytest.raises(BackflipTypeError, match=r"fingerprint needs an ArrayDataset or "
                                                r"ImageFolder; got tuple"):
        fingerprint((x, y))


def test_fingerprint_folder_changes_on_one_pixel(grey_folder):
    base = fingerprint(ImageFolder(grey_folder))
    assert fingerprint(ImageFolder(grey_folder)) == base
    with Image.open(grey_folder / "b" / "1.png") as im:
        px = np.asarray(im).copy()
    px[3, 4] ^= 1
    Image.fromarray(px, "L").save(grey_folder / "b" / "1.png")
    changed = fingerprint(ImageFolder(grey_folder))
    assert changed != base
    (grey_folder / "b" / "1.png").rename(grey_folder / "b" / "9.png")  # same bytes, new name
    assert fingerprint(ImageFolder(grey_folder)) != changed


def test_describe_is_json(grey_folder, tmp_path):
    folder = ImageFolder(grey_folder)
    d = describe(folder)
    assert json.loads(json.dumps(d)) == d
    assert d == {"name": "grey", "form": "folder", "path": str(grey_folder.resolve()), "n": 6,
                 "shape": [1, 8, 8], "num_classes": 3, "labelled": True,
                 "classes": ["a", "b", "c"], "sha256": fingerprint(folder)}
    arrays = describe(folder.to_arrays())
    assert arrays["form"] == "folder" and arrays["sha256"] != d["sha256"]
    np.save(tmp_path / "t.npy", np.zeros((3, 5), np.int64))
    t = describe(read_npy(tmp_path / "t.npy"))
    assert json.loads(json.dumps(t)) == t
    assert (t["form"], t["n"], t["shape"], t["num_classes"], t["labelled"]) == ("npy", 3, [5],
                                                                               None, False)
    b = describe(open_dataset("moons", limit=3))
    assert (b["form"], b["path"], b["name"], b["num_classes"]) == ("builtin", None, "moons", 2)
    with pytest.raises(BackflipTypeError, match=r"describe needs an ArrayDataset or ImageFolder"):
        describe(None)


# --- the checks on the new forms -------------------------------------------------------------

def test_checks_accept_a_streamed_folder(grey_folder, colour_folder):
    grey = ImageFolder(grey_folder)
    colour = ImageFolder(colour_folder, size=8)
    with pytest.raises(BackflipValueError, match=r"source 'grey' samples are 1x8x8 but target "
                                                 r"'colour' samples are 3x8x8: they have "
                                                 r"different channels"):
        check_compatible(grey, colour)
    check_compatible(to_grey(ImageFolder(colour_folder, size=8).to_arrays()),
                     ImageFolder(colour_folder, size=8, channels=1))
    unlabelled = ArrayDataset(np.zeros((5, 1, 8, 8), np.float32), name="t")
    check_compatible(grey, unlabelled)
    assert check_batch_size(grey, 6) == 6
    with pytest.raises(BackflipValueError, match=r"larger than the source data set 'grey' \(6 "
                                                 r"samples\)"):
        check_batch_size(grey, 7)


def test_folder_class_names_must_match(tmp_path):
    rng = np.random.default_rng(0)
    for side, names in (("s", ("cat", "dog")), ("t", ("cat", "fox"))):
        for cls in names:
            (tmp_path / side / cls).mkdir(parents=True)
            _grey(rng).save(tmp_path / side / cls / "0.png")
    with pytest.raises(BackflipValueError, match=r"source 's' has the classes \['cat', 'dog'\] "
                                                 r"but target 't' has \['cat', 'fox'\]"):
        check_compatible(open_dataset(tmp_path / "s"), open_dataset(tmp_path / "t"))


def test_import_needs_no_framework_and_no_pillow():
    code = ("import sys, backflip.data; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras', 'PIL') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
