import subprocess
import sys

import numpy as np
import pytest

from backflip import BackflipTypeError, BackflipValueError
from backflip.data import (
    ArrayDataset,
    check_batch_size,
    check_compatible,
    check_dataset,
    load,
    resize,
    to_grey,
    to_rgb,
)


def _imgs(n, c, h, name="d", classes=10):
    rng = np.random.default_rng(0)
    return ArrayDataset(rng.random((n, c, h, h), dtype=np.float32), np.arange(n) % classes,
                        classes, name)


def test_to_rgb():
    g = _imgs(2, 1, 4)
    rgb = to_rgb(g)
    assert rgb.x.shape == (2, 3, 4, 4)
    for c in range(3):
        np.testing.assert_array_equal(rgb.x[:, c], g.x[:, 0])
    assert to_rgb(rgb) is rgb
    with pytest.raises(BackflipValueError, match=r"to_rgb needs 1 or 3 channels; 'd' has 2"):
        to_rgb(_imgs(1, 2, 4))
    with pytest.raises(BackflipValueError, match=r"to_rgb needs images \(N, C, H, W\)"):
        to_rgb(load("moons", limit=2))


def test_to_grey_is_luminance():
    rgb = _imgs(3, 3, 4)
    grey = to_grey(rgb)
    assert grey.x.shape == (3, 1, 4, 4) and grey.x.dtype == np.float32
    want = 0.299 * rgb.x[:, 0] + 0.587 * rgb.x[:, 1] + 0.114 * rgb.x[:, 2]
    np.testing.assert_allclose(grey.x[:, 0], want, rtol=1e-6)
    # grey replicated to RGB comes back unchanged (the weights sum to 1)
    g = _imgs(2, 1, 4)
    np.testing.assert_allclose(to_grey(to_rgb(g)).x, g.x, rtol=1e-6)
    assert to_grey(g) is g
    with pytest.raises(BackflipValueError, match=r"to_grey needs 1 or 3 channels; 'd' has 2"):
        to_grey(_imgs(1, 2, 4))
    with pytest.raises(BackflipValueError, match=r"to_grey needs images \(N, C, H, W\)"):
        to_grey(load("moons", limit=2))


def test_resize_values():
    ds = _imgs(3, 1, 28)
    up = resize(ds, 32)
    assert up.x.shape == (3, 1, 32, 32) and up.x.dtype == np.float32
    const = ArrayDataset(np.full((1, 3, 28, 28), 0.25, np.float32), np.zeros(1, np.int64), 10, "c")
    np.testing.assert_allclose(resize(const, 32).x, 0.25, rtol=1e-6)
    # shrinking by 2 averages 2x2 blocks exactly
    down = resize(ds, 14).x
    blocks = ds.x.reshape(3, 1, 14, 2, 14, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(down, blocks, rtol=1e-5, atol=1e-6)
    assert resize(ds, 28) is ds
    with pytest.raises(BackflipValueError, match=r"positive int size; got 0"):
        resize(ds, 0)


def test_check_compatible_messages():
    with pytest.raises(BackflipValueError,
                       match=r"source 'm' samples are 1x28x28 but target 't' samples are 3x28x28: "
                             r"they have different channels\. Apply backflip\.data\.to_rgb to the "
                             r"source \(CLI: --source-transform rgb\) so both have 3 channels, or "
                             r"backflip\.data\.to_grey to the target \(CLI: --target-transform "
                             r"grey\)"):
        check_compatible(_imgs(1, 1, 28, "m"), _imgs(1, 3, 28, "t"))
    with pytest.raises(BackflipValueError,
                       match=r"different image sizes\. Apply backflip\.data\.resize\(ds, 32\)"):
        check_compatible(_imgs(1, 3, 28, "m"), _imgs(1, 3, 32, "s"))
    with pytest.raises(BackflipValueError, match=r"has 10 classes but target 'b' has 2"):
        check_compatible(_imgs(1, 1, 4, "a"), _imgs(1, 1, 4, "b", classes=2))
    with pytest.raises(BackflipValueError, match=r"samples are 2 but target .* are 3x4x4; both"):
        check_compatible(load("moons", limit=2), _imgs(1, 3, 4))
    check_compatible(to_rgb(_imgs(1, 1, 28)), _imgs(1, 3, 28))


def test_check_dataset_messages():
    empty = ArrayDataset(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), 2, "nothing")
    with pytest.raises(BackflipValueError,
                       match=r"the target data set 'nothing' is empty \(0 samples\)"):
        check_dataset(empty, "target")
    bad = ArrayDataset(np.zeros((3, 2), np.float32), np.array([0, 1, 7]), 2, "b")
    with pytest.raises(BackflipValueError,
                       match=r"labels of the source data set 'b' must lie in \[0, 2\); got 7 at "
                             r"index 2\. Remap"):
        check_dataset(bad)
    check_dataset(bad, "target", labels=False)
    neg = ArrayDataset(np.zeros((1, 2), np.float32), np.array([-1]), 2, "n")
    with pytest.raises(BackflipValueError, match=r"got -1 at index 0"):
        check_dataset(neg)
    with pytest.raises(BackflipValueError, match=r"has 3 samples but labels of shape \(2,\)"):
        check_dataset(ArrayDataset(np.zeros((3, 2), np.float32), np.zeros(2, np.int64), 2, "s"))
    with pytest.raises(BackflipTypeError, match=r"must be a backflip.data.ArrayDataset; got tuple"):
        check_dataset((1, 2))
    assert check_dataset(load("moons", limit=5)) is not None


@pytest.mark.parametrize(("x", "y", "match"), [
    (np.zeros((2, 2)), [0, 1], r"'d' has x of dtype float64; the networks take float32 "
                               r"\(images scaled to \[0, 1\]\)\. Pass x\.astype\(np\.float32\)\.$"),
    (np.zeros((2, 1, 4, 4), np.uint8), [0, 1], r"x of dtype uint8.*x\.astype\(np\.float32\) / 255\.$"),
    (np.zeros((2, 2), np.float32), [0.0, 1.0], r"labels of the source data set 'd' must be "
                                               r"integers; got float64\. They are all whole "
                                               r"numbers: pass y\.astype\(np\.int64\)\.$"),
    (np.zeros((2, 2), np.float32), [0.0, 1.7], r"must be integers; got float64 with non-integral "
                                               r"values \(e\.g\. 1\.7 at index 1\); they look like "
                                               r"regression targets or probabilities, which "
                                               r"classification cannot take"),
    (np.zeros((2, 2), np.float32), [True, False], r"got bool\. Pass y\.astype\(np\.int64\)"),
    (np.zeros((2, 2), np.float32), ["a", "b"], r"got <U1\. Map class names to integers, e\.g\. "
                                               r"classes, y = np\.unique\(y, return_inverse=True\)"),
])
def test_check_dataset_dtypes(x, y, match):
    with pytest.raises(BackflipTypeError, match=match):
        check_dataset(ArrayDataset(x, np.array(y), 2, "d"))


def test_unlabelled_target_labels_may_be_any_dtype():
    ds = ArrayDataset(np.zeros((2, 2), np.float32), np.full(2, np.nan), 2, "t")
    assert check_dataset(ds, "target", labels=False) is ds


def test_check_batch_size():
    ds = load("moons", limit=10)
    assert check_batch_size(ds, 10) == 10
    with pytest.raises(BackflipValueError,
                       match=r"batch_size 64 is larger than the target data set 'moons' \(10 "
                             r"samples\)\. Use --batch-size 10 or less"):
        check_batch_size(ds, 64, "target")
    with pytest.raises(BackflipValueError, match=r"batch_size must be >= 1; got 0"):
        check_batch_size(ds, 0)
    with pytest.raises(BackflipTypeError, match=r"batch_size must be an int; got 2.5"):
        check_batch_size(ds, 2.5)


def test_import_pulls_in_no_framework():
    code = ("import sys, backflip.data; from backflip.data import load; load('moons', limit=2); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_fake_mnist_is_learnable(fake_root):
    from sklearn.linear_model import LogisticRegression

    train, test = load("mnist", root=fake_root), load("mnist", "test", root=fake_root)
    assert np.bincount(train.y).tolist() == [30] * 10
    clf = LogisticRegression(max_iter=300).fit(train.x.reshape(len(train), -1), train.y)
    assert clf.score(test.x.reshape(len(test), -1), test.y) > 0.6


def _vec(n=4, d=2, y=None, classes=None, name="d", **kw):
    return ArrayDataset(np.zeros((n, d), np.float32), y, classes, name, **kw)


def test_array_dataset_defaults_and_positional_order():
    ds = ArrayDataset(np.zeros((3, 2), np.float32))
    assert ds.y is None and ds.num_classes is None and not ds.labelled
    assert ds.name == "arrays" and ds.attrs == {} and ds.origin == {"form": "arrays"}
    assert repr(ds) == "ArrayDataset(name='arrays', n=3, x=float32(3, 2), unlabelled)"
    assert ArrayDataset(np.zeros((3, 2), np.float32)).origin is not ds.origin
    # (x, y, num_classes, name, attrs) positionally, as every existing caller passes them
    full = ArrayDataset(ds.x, np.array([0, 1, 1]), 5, "n", {"a": np.arange(3)})
    assert (full.num_classes, full.name, full.labelled) == (5, "n", True)
    assert full.attrs["a"].tolist() == [0, 1, 2]
    assert repr(full) == "ArrayDataset(name='n', n=3, x=float32(3, 2), num_classes=5)"
    # num_classes inferred from integer labels only
    assert ArrayDataset(ds.x, np.array([0, 3, 1])).num_classes == 4
    assert ArrayDataset(ds.x, np.array([0.0, 3.0, 1.0])).num_classes is None


@pytest.mark.parametrize("transform", [to_rgb, to_grey, lambda d: resize(d, 8)])
def test_transforms_keep_unlabelled_and_origin(transform):
    x = np.random.default_rng(0).random((2, 1 if transform is not to_grey else 3, 4, 4),
                                        dtype=np.float32)
    ds = ArrayDataset(x, name="t", origin={"form": "npy", "path": "/p/t.npy"})
    out = transform(ds)
    assert out is not ds
    assert out.y is None and out.num_classes is None and not out.labelled
    assert out.name == "t" and out.origin == {"form": "npy", "path": "/p/t.npy"}
    check_dataset(out, "target", labels=False)


@pytest.mark.parametrize(("shape", "match"), [
    ((2, 8, 8, 3), r"the source data set 'd' has x of shape \(2, 8, 8, 3\), which looks "
                   r"channels-last \(N, H, W, C\); backflip takes images as \(N, C, H, W\)\. "
                   r"Pass x\.transpose\(0, 3, 1, 2\) \(NumPy\)\."),
    ((2, 28, 28, 1), r"channels-last"),
    ((2, 28, 28), r"has x of shape \(2, 28, 28\): images \(N, H, W\) without a channel axis; "
                  r"backflip takes images as \(N, C, H, W\)\. Pass x\[:, None\] \(adds C=1\)\."),
    ((5,), r"has x of shape \(5,\); x must be \(N, D\) vectors or \(N, C, H, W\) images\. If "
           r"each sample is one number, pass x\[:, None\]\."),
    ((2, 1, 3, 4, 4), r"has x of shape \(2, 1, 3, 4, 4\); x must be \(N, D\) vectors or "
                      r"\(N, C, H, W\) images\.$"),
])
def test_check_dataset_layout(shape, match):
    # uint8 on purpose: the layout is reported before the dtype
    ds = ArrayDataset(np.zeros(shape, np.uint8), np.zeros(shape[0], np.int64), 2, "d")
    with pytest.raises(BackflipValueError, match=match):
        check_dataset(ds)


def test_channels_first_images_with_a_last_axis_of_3_are_fine():
    ds = ArrayDataset(np.zeros((2, 3, 4, 3), np.float32), np.zeros(2, np.int64), 2, "d")
    assert check_dataset(ds) is ds


def test_check_dataset_x_must_be_an_array():
    with pytest.raises(BackflipTypeError, match=r"has x of type list; x must be a NumPy array\. "
                                                r"Pass np\.asarray\(x, np\.float32\)"):
        check_dataset(ArrayDataset([[0.0]], np.zeros(1, np.int64), 2, "d"))


def test_check_dataset_non_finite():
    x = np.zeros((30, 1, 2, 2), np.float32)
    x[17, 0, 1, 1] = np.nan
    x[20, 0, 0, 0] = np.inf
    x[29, 0, 0, 1] = -np.inf
    ds = ArrayDataset(x, np.zeros(30, np.int64), 2, "foo")
    with pytest.raises(BackflipValueError,
                       match=r"the target data set 'foo' has 3 non-finite values \(NaN or inf\), "
                             r"the first in sample 17; drop or impute those samples before "
                             r"training \(e\.g\. keep = np\.isfinite\(x\)\.all\(axis=tuple\(range\(1, "
                             r"x\.ndim\)\)\), then x\[keep\], y\[keep\]\)\."):
        check_dataset(ds, "target", labels=False)
    # the float64 sum that screens clean data does not overflow on large finite values
    big = ArrayDataset(np.full((4, 2), 3e38, np.float32), np.zeros(4, np.int64), 2, "big")
    assert check_dataset(big) is big


def test_check_dataset_without_labels():
    with pytest.raises(BackflipValueError,
                       match=r"the source data set 'd' has no labels; the source domain trains "
                             r"the classifier on its labels: pass y\.$"):
        check_dataset(_vec())
    with pytest.raises(BackflipValueError,
                       match=r"the target data set 'd' has no labels; method target-only trains "
                             r"on target labels: pass a labelled target or use method dann"):
        check_dataset(_vec(), "target")
    with pytest.raises(BackflipValueError, match=r"a test set is scored against its labels"):
        check_dataset(_vec(), "target test")
    unlabelled = _vec()
    assert check_dataset(unlabelled, "target", labels=False) is unlabelled
    csv_origin = {"form": "csv", "path": "/data/t.csv", "columns": ["a", "b", "class"],
                  "label_column": "label"}
    with pytest.raises(BackflipValueError,
                       match=r"has no labels; .* It was read from /data/t\.csv, which has no "
                             r"column 'label' \(columns: a, b, class\); name the label column "
                             r"with label_column= \(CLI --label-column NAME\)\."):
        check_dataset(_vec(origin=csv_origin))
    with pytest.raises(BackflipValueError, match=r"/d/s\.npz, which has no key 'y'; save the "
                                                 r"labels with it: np\.savez\(path, x=x, y=y\)"):
        check_dataset(_vec(origin={"form": "npz", "path": "/d/s.npz"}))
    with pytest.raises(BackflipValueError, match=r"a \.npy holds x only, so save x and y together"):
        check_dataset(_vec(origin={"form": "npy", "path": "/d/s.npy"}))


def test_check_dataset_label_values():
    with pytest.raises(BackflipValueError,
                       match=r"labels of the source data set 'd' look 1-based: they run from 1 "
                             r"to 3 but must lie in \[0, 3\)\. Pass y - 1\."):
        check_dataset(_vec(3, y=np.array([1, 2, 3]), classes=3))
    # one past the end without a 1-based pattern keeps the generic message
    with pytest.raises(BackflipValueError, match=r"must lie in \[0, 3\); got 3 at index 2"):
        check_dataset(_vec(3, y=np.array([0, 2, 3]), classes=3))
    with pytest.raises(BackflipValueError, match=r"has num_classes 0; it must be an int >= 1"):
        check_dataset(_vec(2, y=np.array([0, 0]), classes=0))
    with pytest.raises(BackflipValueError,
                       match=r"labels of shape \(4, 3\); y must be a 1-d array with one label per "
                             r"sample\. If y is one-hot or per-class scores, pass "
                             r"y\.argmax\(axis=1\)\."):
        check_dataset(_vec(4, y=np.eye(3)[[0, 1, 2, 0]], classes=3))
    inferred = _vec(3, y=np.array([0, 2, 1]))
    assert inferred.num_classes == 3 and check_dataset(inferred) is inferred


def test_check_compatible_vectors_and_unlabelled():
    with pytest.raises(BackflipValueError,
                       match=r"source 'a' has 5 features per sample but target 'b' has 7; both "
                             r"domains need the same features \(same columns in the same "
                             r"order\)\."):
        check_compatible(_vec(d=5, name="a"), _vec(d=7, name="b"))
    labelled = _vec(y=np.array([0, 1, 0, 1]), classes=2, name="a")
    check_compatible(labelled, _vec(name="b"))  # an unlabelled target has no classes to compare
    check_compatible(_vec(name="a"), labelled)
    named = lambda names, name: _vec(y=np.array([0, 1, 0, 1]), classes=2, name=name,  # noqa: E731
                                     origin={"form": "csv", "classes": names})
    check_compatible(named(["cat", "dog"], "a"), named(["cat", "dog"], "b"))
    with pytest.raises(BackflipValueError,
                       match=r"source 'a' has the classes \['cat', 'dog'\] but target 'b' has "
                             r"\['cat', 'fox'\]; class names are numbered in sorted order"):
        check_compatible(named(["cat", "dog"], "a"), named(["cat", "fox"], "b"))


def test_check_batch_size_with_a_hold_out():
    # ds is what is left after the hold-out (60 samples, round(60 * 0.1) = 6 held out)
    ds = _vec(54, y=np.zeros(54, np.int64), classes=2, name="foo")
    assert check_batch_size(ds, 54, held_out=0.1) == 54
    with pytest.raises(BackflipValueError,
                       match=r"batch_size 64 is larger than the source data set 'foo' \(54 "
                             r"samples after holding out 10% \(6\) for validation, val_fraction "
                             r"0\.1\)\. Use --batch-size 54 or less, a smaller --val-fraction, or "
                             r"more data \(raise --limit\)\.$"):
        check_batch_size(ds, 64, held_out=0.1)
    with pytest.raises(BackflipValueError,
                       match=r"\(45 samples after holding out 25% \(15\) for validation, "
                             r"val_fraction 0\.25\)\. Use --batch-size 45 or less"):
        check_batch_size(_vec(45, name="foo"), 46, held_out=0.25)
    with pytest.raises(BackflipValueError, match=r"\(54 samples\)\. Use --batch-size 54 or less, "
                                                 r"or more data \(raise --limit\)\.$"):
        check_batch_size(ds, 61)
    with pytest.raises(BackflipValueError, match=r"held_out must be a fraction in \[0, 1\); got 1"):
        check_batch_size(ds, 8, held_out=1)


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 0.9])
def test_held_out_count_matches_the_split(fraction):
    # the count in the message is the trainer's round(n * fraction) for the n that left
    # len(ds), or left out where two n leave the same number (round half to even)
    from backflip.data._dataset import _held_count

    for n in range(1, 400):
        held = round(n * fraction)
        assert _held_count(n - held, fraction) in (None, held)
    assert _held_count(54, 0.1) == 6 and _held_count(900, 0.1) == 100
    ds = _vec(1, name="one")
    with pytest.raises(BackflipValueError, match=r"\(1 samples after holding out 50% for "
                                                 r"validation, val_fraction 0\.5\)"):
        check_batch_size(ds, 2, held_out=0.5)  # n = 1, 2 or 3 all leave one sample
