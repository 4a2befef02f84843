"""``backflip saliency`` on a checkpoint, through the backflip.dann contract.

backflip.dann (load_model, load_domain) is stood in for by a small fake module with
the contract's signatures, so this test does not depend on the trainer.
"""

from __future__ import annotations

import sys
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
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(4 * 12 * 12, 10),
    ).eval()  # fmt: skip
    config = types.SimpleNamespace(source="mnist", target="mnistm", method="dann")

    def load_model(path, map_location="cpu"):
        calls.append(("load_model", str(path), map_location))
        return model, config

    def load_domain(config, domain, split="test", root=None):
        calls.append(("load_domain", domain, split))
        rng = np.random.default_rng(1)
        return ArrayDataset(
            x=rng.random((40, 3, 28, 28), dtype=np.float32),
            y=rng.integers(0, 10, 40),
            num_classes=10,
            name=getattr(config, domain),
        )

    fake = types.ModuleType("backflip.dann")
    fake.load_model, fake.load_domain = load_model, load_domain
    monkeypatch.setitem(sys.modules, "backflip.dann", fake)
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


def test_cli_errors(fake_dann, tmp_path, capsys):
    assert main(["saliency", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["saliency", "--checkpoint", str(fake_dann.ckpt), "--n", "0"]) == 2
    assert "--n must be >= 1; got 0" in capsys.readouterr().err
