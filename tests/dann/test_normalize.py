"""Input normalisation: fitted on the SOURCE train set only, carried by the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backflip import data
from backflip._errors import BackflipValueError
from backflip.dann import Standardize, TrainConfig, load_domain, load_model, train


def _shifted(ds, scale, shift):
    return data.ArrayDataset((ds.x * scale + shift).astype(np.float32), ds.y, ds.num_classes,
                             ds.name)


def test_standardize_fits_per_channel_and_round_trips_state_dict():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, 4, 4, generator=gen) * torch.tensor([1.0, 2.0, 5.0]).view(1, 3, 1, 1)
    x = x + torch.tensor([0.5, -1.0, 3.0]).view(1, 3, 1, 1)
    s = Standardize(3).fit(x)
    torch.testing.assert_close(s.mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(s.std, x.transpose(0, 1).reshape(3, -1).std(1))
    y = s(x)
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    back = Standardize(3)
    back.load_state_dict(s.state_dict())
    torch.testing.assert_close(back(x), y)
    # a constant channel is centred and left unscaled (not divided by ~0), and counted
    const = Standardize(2).fit(torch.tensor([[1.0, 0.0], [1.0, 2.0], [1.0, 4.0]]))
    assert const.std.tolist() == [1.0, 2.0] and const.mean.tolist() == [1.0, 2.0]
    assert const.constant == 1
    torch.testing.assert_close(const(torch.tensor([[5.0, 2.0]])), torch.tensor([[4.0, 0.0]]))


@pytest.mark.slow
def test_source_statistics_only_and_checkpoint_carries_them(tmp_path, tiny_config,
                                                          moons_domains):
    s, t, tt = moons_domains
    s = _shifted(s, 3.0, 10.0)  # source far from 0: a missing normalisation shows
    t2 = _shifted(t, 100.0, -50.0)  # target statistics must NOT enter the map
    cfg = tiny_config(out=str(tmp_path), epochs=1, val_fraction=0.0)
    res = train(cfg, source=s, target=t2, target_test=tt)
    norm = res.model.features[0]
    assert isinstance(norm, Standardize)
    np.testing.assert_allclose(norm.mean.numpy(), s.x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.std.numpy(), s.x.std(0, ddof=1), rtol=1e-4)
    model, back = load_model(tmp_path / "checkpoint.pt")
    assert back.normalize == "source"
    torch.testing.assert_close(model.features[0].mean, norm.mean)
    x = torch.as_tensor(tt.x)
    torch.testing.assert_close(model(x), res.model(x))
    # dropping the layer's statistics changes what the model computes
    model.features[0].mean.zero_()
    model.features[0].std.fill_(1.0)
    assert not torch.allclose(model(x), res.model(x))


@pytest.mark.slow
def test_normalize_none_is_identity(tiny_config, moons_domains):
    s, t, tt = moons_domains
    res = train(tiny_config(normalize="none", epochs=1), source=s, target=t, target_test=tt)
    assert torch.equal(res.model.features[0].mean, torch.zeros(2))
    assert torch.equal(res.model.features[0].std, torch.ones(2))


@pytest.mark.slow
def test_saliency_contract_sees_normalised_inputs(tmp_path, fake_mnist_root):
    cfg = TrainConfig(source="mnist", target="mnistm", source_transform="rgb", epochs=1,
                      batch_size=32, limit=64, progress=False, threads=1, eval_limit=64,
                      data_root=str(fake_mnist_root), out=str(tmp_path))
    res = train(cfg)
    model, back = load_model(tmp_path / "checkpoint.pt")
    src = load_domain(back, "source", "train")
    mean = model.features[0].mean.numpy()
    assert mean.shape == (3,) and (mean > 0).all() and (model.features[0].std.numpy() > 0).all()
    assert not np.allclose(mean, 0.0)
    tgt = torch.as_tensor(load_domain(back, "target", "test").x[:8])
    torch.testing.assert_close(model(tgt), res.model(tgt))
    assert src.x.shape[1:] == (3, 28, 28)


def test_unknown_normalize_is_refused():
    with pytest.raises(BackflipValueError, match="unknown normalize 'target'; choose one of source"):
        TrainConfig(normalize="target")
