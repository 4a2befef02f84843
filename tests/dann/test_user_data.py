"""The user's own data: arrays, unlabelled targets, files and folders, checks before any work."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from backflip import data
from backflip._errors import BackflipTypeError, BackflipValueError
from backflip.dann import load_model, train


def _blobs(n=120, d=4, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d)).astype(np.float32) + (2.0 * y[:, None] - 1.0) + shift
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture
def arrays():
    xs, ys = _blobs()
    xt, yt = _blobs(shift=0.5, seed=1)
    return xs, ys, xt, yt


@pytest.mark.slow
def test_arrays_with_an_unlabelled_target_train_and_say_there_is_no_target_accuracy(
        tmp_path, tiny_config, arrays, capsys):
    xs, ys, xt, _ = arrays
    res = train(tiny_config(out=str(tmp_path), plots=True), source=data.ArrayDataset(xs, ys),
                target=data.ArrayDataset(xt))
    assert res.target_accuracy is None and all(r["target_acc"] is None for r in res.history)
    assert {"source_val_acc", "dev_risk", "target_entropy", "snd"} <= set(res.selection)
    assert "no target_test was given" in capsys.readouterr().err
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["target_accuracy"] is None and "no target_test" in result["notes"][0]
    report = (tmp_path / "report.md").read_text()
    assert "not scored (no labelled target test set)" in report
    assert "no target_test was given" in report
    for png in ("curves-dann.png", "features-pca.png"):
        assert (tmp_path / png).stat().st_size > 5000


@pytest.mark.slow
def test_the_run_records_what_it_trained_on(tmp_path, tiny_config, arrays):
    xs, ys, xt, yt = arrays
    train(tiny_config(out=str(tmp_path)), source=data.ArrayDataset(xs, ys, name="mine"),
          target=data.ArrayDataset(xt), target_test=data.ArrayDataset(xt, yt))
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["data"]["source"]["name"] == "mine" and cfg["data"]["source"]["n"] == 120
    assert cfg["data"]["source"]["shape"] == [4] and cfg["data"]["source"]["num_classes"] == 2
    assert cfg["data"]["target"]["labelled"] is False
    assert cfg["data"]["source"]["sha256"] == data.fingerprint(data.ArrayDataset(xs, ys))
    assert cfg["network"] == {"arch": "mlp", "class": "backflip.dann._models.DANN",
                              "factory": None}
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["data"] == cfg["data"]
    # the built-in data sets named by the config's defaults were never read
    assert cfg["data"]["target"]["name"] != "moons-rotated"


@pytest.mark.slow
def test_data_given_in_part_is_refused(tiny_config, arrays):
    xs, ys, _, _ = arrays
    with pytest.raises(BackflipValueError, match=r"given data but no target; pass target= as "
                       r"well .* Built-in data sets are never mixed in with yours\."):
        train(tiny_config(), source=data.ArrayDataset(xs, ys))
    with pytest.raises(BackflipValueError, match="no source and no target"):
        train(tiny_config(), target_test=data.ArrayDataset(xs, ys))


@pytest.mark.slow
@pytest.mark.parametrize(("x", "y", "kw", "match"), [
    (np.full((40, 4), np.nan, np.float32), None, {}, r"non-finite values \(NaN or inf\)"),
    (np.zeros((40, 28, 28, 1), np.float32), None, {}, r"x\.transpose\(0, 3, 1, 2\)"),
    (np.zeros((40, 28, 28), np.float32), None, {}, r"x\[:, None\]"),
    (None, np.arange(40) % 2 + 1.0, {}, r"must be integers; got float64.*y\.astype\(np\.int64\)"),
    (None, np.arange(40) % 2 + 1, {"num_classes": 2}, r"look 1-based.*y - 1"),
])
def test_bad_source_data_fails_before_any_work(tmp_path, tiny_config, x, y, kw, match):
    xs, ys = _blobs(40)
    xt, _ = _blobs(40, seed=1)
    x = xs if x is None else x
    y = ys if y is None else y
    target = data.ArrayDataset(xt if x.ndim == 2 else x.copy())
    with pytest.raises((BackflipValueError, BackflipTypeError), match=match):
        train(tiny_config(out=str(tmp_path / "run")), source=data.ArrayDataset(x, y, **kw),
              target=target)
    assert not (tmp_path / "run").exists()  # no run folder for a run that never started


@pytest.mark.slow
def test_other_feature_counts_and_unlabelled_target_only_are_refused(tiny_config, arrays):
    xs, ys, xt, _ = arrays
    with pytest.raises(BackflipValueError, match=r"4 features per sample but target .* has 3"):
        train(tiny_config(), source=data.ArrayDataset(xs, ys),
              target=data.ArrayDataset(xt[:, :3]))
    with pytest.raises(BackflipValueError, match="target-only trains on target labels"):
        train(tiny_config(method="target-only"), source=data.ArrayDataset(xs, ys),
              target=data.ArrayDataset(xt))


@pytest.mark.slow
def test_batch_size_error_counts_the_samples_after_the_hold_out(tiny_config, arrays):
    xs, ys, xt, _ = arrays
    with pytest.raises(BackflipValueError, match=r"108 samples after holding out 10% \(12\) "
                       r"for validation"):
        train(tiny_config(batch_size=110), source=data.ArrayDataset(xs, ys),
              target=data.ArrayDataset(xt))


@pytest.mark.slow
def test_constant_source_features_are_left_unscaled(tiny_config, capsys):
    # UCI-style digits: border pixels are 0 in every source image but not in the target;
    # dividing them by 1e-6 made NaN stops. They are centred, left unscaled, and counted.
    xs, ys = _blobs(120, d=6)
    xs[:, :2] = 0.0
    xt, yt = _blobs(120, d=6, seed=1)
    res = train(tiny_config(), source=data.ArrayDataset(xs, ys), target=data.ArrayDataset(xt),
                target_test=data.ArrayDataset(xt, yt))
    assert np.isfinite(res.history[-1]["loss"])
    std = res.model.features[0].std
    assert std[:2].tolist() == [1.0, 1.0] and (std[2:] != 1.0).all()
    assert "2 of 6 source input channels are constant" in capsys.readouterr().err


@pytest.mark.slow
def test_uci_digits_8x8_train_with_the_generic_conv_net(tiny_config):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images[:, None] / 16.0).astype(np.float32)  # (N, 1, 8, 8), corners always 0
    y = digits.target.astype(np.int64)
    src, tgt = data.ArrayDataset(x[:900], y[:900]), data.ArrayDataset(1.0 - x[900:])
    res = train(tiny_config(epochs=3, batch_size=32, lr=0.003),
                source=src, target=tgt, target_test=data.ArrayDataset(1.0 - x[900:], y[900:]))
    assert type(res.model.features[1]).__name__ == "Conv2d"  # the generic 'conv' net
    assert res.history[-1]["train_acc"] > 0.5  # it learns (chance is 0.1)
    assert all(np.isfinite(r["loss"]) for r in res.history)


@pytest.mark.slow
def test_224_pixel_images_get_a_built_in_network(tiny_config):
    rng = np.random.default_rng(0)
    x = rng.random((8, 3, 224, 224), dtype=np.float32)
    y = np.arange(8) % 2
    res = train(tiny_config(epochs=1, batch_size=4, val_fraction=0.0, eval_limit=8),
                source=data.ArrayDataset(x, y), target=data.ArrayDataset(x[::-1].copy()))
    assert res.model(torch.as_tensor(x[:2])).shape == (2, 2)


def _write_files(tmp_path):
    from PIL import Image

    xs, ys = _blobs(96, d=3)
    xt, yt = _blobs(96, d=3, shift=0.5, seed=1)
    np.savez(tmp_path / "source.npz", x=xs, y=ys)
    np.save(tmp_path / "target.npy", xt)
    np.savez(tmp_path / "target_test.npz", x=xt, y=yt)
    with open(tmp_path / "source.csv", "w") as fh:
        fh.write("f1,f2,f3,kind\n")
        fh.writelines(",".join(f"{v:.6f}" for v in row) + f",{'ab'[c]}\n"
                      for row, c in zip(xs, ys, strict=True))
    rng = np.random.default_rng(0)
    for domain, offset in (("src_images", 0), ("tgt_images", 60)):
        for c, name in enumerate(("circle", "square")):
            (tmp_path / domain / name).mkdir(parents=True)
            for i in range(24):
                pixels = rng.integers(0, 120, (10, 12, 3)) + 100 * c + offset % 40
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                    tmp_path / domain / name / f"{i}.png")


@pytest.mark.slow
@pytest.mark.parametrize(("source", "target", "extra"), [
    ("source.npz", "target.npy", ["--target-test", "target_test.npz"]),
    ("source.csv", "target.npy", ["--label-column", "kind", "--target-test", "target_test.npz"]),
    ("src_images", "tgt_images", ["--target-test", "tgt_images"]),
    ("src_images", "tgt_images", ["--target-test", "tgt_images", "--stream", "--workers", "1"]),
], ids=["npz+npy", "csv", "image-folder", "image-folder-streamed"])
def test_each_file_form_trains_from_the_cli(tmp_path, source, target, extra):
    _write_files(tmp_path)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "backflip", "train", "--source", source, "--target", target,
         *extra, "--epochs", "2", "--min-epoch-steps", "1", "--batch-size", "16", "--threads", "1", "--no-progress",
         "--out", str(out)], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "target accuracy 0." in proc.stdout  # scored on the given test set
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "result.json", "report.md",
                 "curves-dann.png", "features-pca.png"):
        assert (out / name).exists(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["data"]["source"]["path"] == str(tmp_path / source)
    assert cfg["data"]["source"]["in_memory"] is ("--stream" not in extra)
    model, back = load_model(out / "checkpoint.pt")
    assert back.source == source and not model.training


@pytest.mark.slow
def test_an_unknown_name_or_path_lists_the_accepted_forms(tiny_config, tmp_path):
    with pytest.raises(BackflipValueError, match=r"a \.npz file with keys x and y.*a folder "
                       r"with one sub-folder of images per class"):
        train(tiny_config(source=str(tmp_path / "nope.npz")))


@pytest.mark.slow
def test_saliency_on_a_user_model_trained_on_an_image_folder(tmp_path, monkeypatch, capsys):
    from backflip.cli import main

    _write_files(tmp_path)
    (tmp_path / "mynets.py").write_text(
        "import math\nfrom torch import nn\nfrom backflip.dann import DANN\n\n"
        "def build(in_shape, num_classes):\n"
        "    f = nn.Sequential(nn.Conv2d(in_shape[0], 4, 3), nn.ReLU(), nn.Flatten())\n"
        "    d = 4 * (in_shape[1] - 2) * (in_shape[2] - 2)\n"
        "    return DANN(f, nn.Linear(d, num_classes), nn.Linear(d, 1))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["train", "--model", "mynets:build", "--source", "src_images", "--target",
                 "tgt_images", "--epochs", "1", "--min-epoch-steps", "1", "--batch-size", "16", "--no-progress",
                 "--no-plots", "--out", "run"]) == 0
    assert main(["saliency", "--checkpoint", "run/checkpoint.pt", "--model", "mynets:build",
                 "--n", "4", "--out", "sal"]) == 0
    out = capsys.readouterr().out
    assert "override_gradients(rule=guided): 1/1 nonlinearity calls overridden" in out
    maps = np.load(tmp_path / "sal" / "saliency_guided_backprop_target.npz")["maps"]
    assert maps.shape == (4, 3, 10, 12) and np.abs(maps).sum() > 0
    # without --model the run's recorded factory is used (importable from here)
    assert main(["saliency", "--checkpoint", "run/checkpoint.pt", "--n", "2", "--out",
                 "sal2"]) == 0
