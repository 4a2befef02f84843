"""DomainBatchNorm: per-domain statistics in training, the chosen domain's at test time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backflip import data
from backflip._errors import BackflipValueError
from backflip.dann import DomainBatchNorm, TrainConfig, bn_domain, build_model, load_model, train


def _pair(n=16, c=3, shift=4.0):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, c, 5, 5, generator=g), torch.randn(n, c, 5, 5, generator=g) * 2 + shift


def test_two_domain_batch_normalises_each_half_by_its_own_statistics():
    xs, xt = _pair()
    dbn = DomainBatchNorm(3)
    with torch.no_grad():
        dbn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        dbn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    ref = {k: nn.BatchNorm2d(3) for k in ("s", "t")}
    for bn in ref.values():
        bn.load_state_dict({"weight": dbn.weight.data, "bias": dbn.bias.data,
                            "running_mean": torch.zeros(3), "running_var": torch.ones(3),
                            "num_batches_tracked": torch.tensor(0)})
    dbn.split = True
    y = dbn(torch.cat([xs, xt]))
    torch.testing.assert_close(y[:16], ref["s"](xs))
    torch.testing.assert_close(y[16:], ref["t"](xt))
    torch.testing.assert_close(dbn.running_mean[0], ref["s"].running_mean)
    torch.testing.assert_close(dbn.running_mean[1], ref["t"].running_mean)
    torch.testing.assert_close(dbn.running_var[1], ref["t"].running_var)
    # a mixed batch norm (what nn.BatchNorm2d does on the concatenation) is different
    assert not torch.allclose(y[16:], nn.BatchNorm2d(3)(torch.cat([xs, xt]))[16:], atol=1e-2)


@pytest.mark.slow
def test_eval_and_single_domain_batches_use_the_chosen_domain():
    dbn = DomainBatchNorm(2).eval()
    with torch.no_grad():
        dbn.running_mean.copy_(torch.tensor([[0.0, 0.0], [10.0, -10.0]]))
        dbn.running_var.copy_(torch.tensor([[1.0, 1.0], [4.0, 4.0]]))
    x = torch.tensor([[10.0, -10.0]])
    bn_domain(dbn, "target")
    torch.testing.assert_close(dbn(x), torch.zeros(1, 2), atol=1e-4, rtol=0)
    bn_domain(dbn, "source")
    torch.testing.assert_close(dbn(x), x / (1 + 1e-5) ** 0.5)
    dbn.train()  # a single-domain training batch updates only that domain's statistics
    before = dbn.running_mean.clone()
    dbn(torch.randn(8, 2) + 3.0)
    assert not torch.equal(dbn.running_mean[0], before[0])
    assert torch.equal(dbn.running_mean[1], before[1])


def test_errors_name_the_problem():
    dbn = DomainBatchNorm(2)
    with pytest.raises(BackflipValueError, match="unknown domain 'test'; choose one of source, target"):
        bn_domain(dbn, "test")
    dbn.split = True
    with pytest.raises(BackflipValueError, match="equal source and target halves; got 5"):
        dbn(torch.randn(5, 2))


def test_dann_forward_splits_only_during_the_call_and_trains_shared_weights():
    model = build_model("mnist-bn", (3, 28, 28))
    norms = [m for m in model.modules() if isinstance(m, DomainBatchNorm)]
    assert len(norms) == 5
    x = torch.cat([torch.rand(4, 3, 28, 28), torch.rand(4, 3, 28, 28) + 1.0])
    y, d = model(x, with_domain=True)
    assert not any(m.split for m in norms)
    (y.sum() + d.sum()).backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in norms)
    assert not torch.equal(norms[0].running_mean[0], norms[0].running_mean[1])
    assert "per-domain statistics" in repr(norms[0])


def _domains(n=96):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    xs = rng.random((n, 3, 28, 28), np.float32) * 0.5
    xs[np.arange(n), 0, y, y] = 1.0  # a learnable mark
    xt = xs * 0.5 + 0.4  # shifted and scaled target
    return (data.ArrayDataset(xs, y, 10, "src"), data.ArrayDataset(xt, y, 10, "tgt"),
            data.ArrayDataset(xt[:48], y[:48], 10, "tgt-test"))


@pytest.mark.slow
@pytest.mark.parametrize(("method", "default"), [("dann", 1), ("source-only", 0), ("target-only", 1)])
def test_trainer_keeps_per_domain_statistics_and_checkpoints_them(tmp_path, method, default):
    s, t, tt = _domains()
    cfg = TrainConfig(source="mnist", target="mnistm", arch="mnist-bn", method=method, epochs=1,
                      batch_size=16, progress=False, threads=1, eval_limit=48,
                      out=str(tmp_path / method))
    res = train(cfg, source=s, target=t, target_test=tt)
    first = res.model.features[2]
    assert isinstance(first, DomainBatchNorm) and int(first.domain) == default
    moved = [not torch.equal(first.running_mean[d], torch.zeros(32)) for d in (0, 1)]
    assert moved == {"dann": [True, True], "source-only": [True, False],
                     "target-only": [False, True]}[method]
    if method == "dann":  # the two domains' statistics differ as their inputs do
        assert (first.running_mean[1] - first.running_mean[0]).abs().max() > 1e-3
    model, _ = load_model(tmp_path / method / "checkpoint.pt")
    x = torch.as_tensor(tt.x[:8])
    with torch.no_grad():
        torch.testing.assert_close(model(x), res.model(x))
    assert int(model.features[2].domain) == default


@pytest.mark.slow
def test_compiles_without_graph_breaks_in_both_modes():
    torch.manual_seed(0)
    model = build_model("mnist-bn", (3, 28, 28))
    x = torch.cat([torch.rand(4, 3, 28, 28), torch.rand(4, 3, 28, 28) + 1.0])
    ref = build_model("mnist-bn", (3, 28, 28))
    ref.load_state_dict(model.state_dict())
    compiled = torch.compile(model, fullgraph=True)
    for a, b in zip(compiled(x, with_domain=True), ref(x, with_domain=True), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    model.eval(), ref.eval()
    bn_domain(model, "source"), bn_domain(ref, "source")
    torch.testing.assert_close(compiled(x), ref(x), atol=1e-4, rtol=1e-4)
