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
    (np.zeros((2, 2), np.float32), [0.5, 1.7], r"'d' has labels of dtype float64; class labels "
                                               r"must be integers\. Pass y\.astype\(np\.int64\)\."),
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


def test_fake_mnist_is_learnable(fake_root):
    from sklearn.linear_model import LogisticRegression

    train, test = load("mnist", root=fake_root), load("mnist", "test", root=fake_root)
    assert np.bincount(train.y).tolist() == [30] * 10
    clf = LogisticRegression(max_iter=300).fit(train.x.reshape(len(train), -1), train.y)
    assert clf.score(test.x.reshape(len(test), -1), test.y) > 0.6
