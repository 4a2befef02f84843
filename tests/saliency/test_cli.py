"""``backflip saliency`` on a checkpoint, through the backflip.dann contract.

The first tests stand in for backflip.dann's load_model/load_domain (the contract's
signatures) so they do not depend on the trainer; the slow one uses a real checkpoint.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip.cli import main  # noqa: E402
from backflip.data import ArrayDataset  # noqa: E402


@pytest.fixture
def fake_dann(monkeypatch, helpers, tmp_path):
    calls = []
    torch.manual_seed(0)
    fake = model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(4 * 12 * 12, 10),
    ).eval()  # fmt: skip
    from backflip.dann import TrainConfig

    config = TrainConfig(source="mnist", target="mnistm", method="dann")

    def load_model(path, map_location="cpu", *, model=None):
        calls.append(("load_model", str(path), map_location))
        return fake, config

    def load_checkpoint(path, map_location="cpu"):
        calls.append(("load_checkpoint", str(path)))
        return {"in_shape": [3, 28, 28], "num_classes": 10, "data": {}}

    def load_domain(config, domain, split="test", root=None):
        calls.append(("load_domain", domain, split))
        rng = np.random.default_rng(1)
        return ArrayDataset(
            x=rng.random((40, 3, 28, 28), dtype=np.float32),
            y=rng.integers(0, 10, 40),
            num_classes=10,
            name=getattr(config, domain),
        )

    import backflip.dann

    monkeypatch.setattr(backflip.dann, "load_model", load_model, raising=False)
    monkeypatch.setattr(backflip.dann, "load_domain", load_domain, raising=False)
    monkeypatch.setattr(backflip.dann, "load_checkpoint", load_checkpoint, raising=False)
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    return types.SimpleNamespace(calls=calls, ckpt=ckpt, model=model)


def test_cli_writes_grid_and_maps(fake_dann, tmp_path, capsys):
    out = tmp_path / "sal"
    code = main(["saliency", "--checkpoint", str(fake_dann.ckpt), "--dataset", "mnistm",
                 "--method", "guided", "--n", "6", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert ("load_domain", "target", "test") in fake_dann.calls
    png, npz = (
        out / "saliency_guided_backprop_target.png",
        out / "saliency_guided_backprop_target.npz",
    )
    assert png.stat().st_size > 1000
    data = np.load(npz)
    assert data["maps"].shape == data["inputs"].shape == (6, 3, 28, 28)
    from backflip.saliency import guided_backprop

    expected = guided_backprop(fake_dann.model, torch.from_numpy(data["inputs"]),
                               torch.from_numpy(data["pred"]))  # fmt: skip
    np.testing.assert_allclose(data["maps"], expected.numpy(), rtol=1e-5, atol=1e-7)
    assert "6 target images" in capsys.readouterr().out


def test_cli_data_set_the_model_cannot_read(fake_dann, tmp_path, capsys):
    code = main(["saliency", "--checkpoint", str(fake_dann.ckpt), "--dataset", "moons",
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "the model trained on mnist -> mnistm cannot read 'moons' images of shape (2,)" in err
    assert "Use --dataset source or --dataset target." in err


def test_cli_errors(fake_dann, tmp_path, capsys):
    assert main(["saliency", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["saliency", "--checkpoint", str(fake_dann.ckpt), "--n", "0"]) == 2
    assert "--n must be >= 1; got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_on_a_real_backflip_train_checkpoint(tmp_path, monkeypatch, capsys):
    """End to end: `backflip train`'s checkpoint (fake MNIST -> MNIST-M, 1 short epoch)."""
    from backflip import dann, data
    root = tmp_path / "cache"
    raw = data.write_fake_mnist(tmp_path / "raw", n_train=300, n_test=100)
    data.fetch("mnist", root=root, source=raw, verify=False)
    cfg = dann.TrainConfig(source="mnist", target="mnistm", source_transform="rgb", epochs=1,
                           limit=128, batch_size=32, progress=False, out=str(tmp_path / "run"),
                           data_root=str(root), eval_limit=64, threads=1)  # fmt: skip
    dann.train(cfg)
    out = tmp_path / "sal"
    ckpt = tmp_path / "run" / "checkpoint.pt"
    assert main(["saliency", "--checkpoint", str(ckpt), "--dataset", "target", "--n", "8",
                 "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "override_gradients(rule=guided): " in printed and "8 target images" in printed
    seen = printed.split("rule=guided): ")[1].split(" nonlinearity")[0]
    n_over, n_seen = map(int, seen.split("/"))
    assert n_seen > 0 and n_over == n_seen
    maps = np.load(out / "saliency_guided_backprop_target.npz")["maps"]
    assert maps.shape == (8, 3, 28, 28) and np.abs(maps).sum() > 0
    assert (out / "saliency_guided_backprop_target.png").stat().st_size > 1000
