"""The DANN module, the paper's networks, the concatenated batch, autocast, the GRL."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from backflip._errors import BackflipValueError
from backflip.dann import DANN, AdversarialHead, build_model


@pytest.mark.parametrize(("arch", "shape", "classes"), [
    ("mnist", (3, 28, 28), 10), ("mnist", (1, 28, 28), 10), ("mnist-bn", (3, 28, 28), 10),
    ("digits32", (3, 32, 32), 10),
    ("moons", (2,), 2),
])
def test_forward_shapes(arch, shape, classes):
    model = build_model(arch, shape, classes)
    x = torch.zeros(4, *shape)
    assert model(x).shape == (4, classes)
    y, d = model.domain_forward(x)
    assert y.shape == (4, classes) and d.shape == (4,)


def test_paper_layer_sizes():
    m = build_model("mnist", (3, 28, 28))
    convs = [c for c in m.features if isinstance(c, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (48, (5, 5))]
    assert [lin.out_features for lin in m.classifier if isinstance(lin, nn.Linear)] == [100, 100, 10]
    assert [lin.out_features for lin in m.discriminator if isinstance(lin, nn.Linear)] == [100, 1]
    s = build_model("digits32")
    assert [c.out_channels for c in s.features if isinstance(c, nn.Conv2d)] == [64, 64, 128]
    sizes = [lin.out_features for lin in s.classifier if isinstance(lin, nn.Linear)]
    assert sizes == [3072, 2048, 10]
    sizes = [lin.out_features for lin in s.discriminator if isinstance(lin, nn.Linear)]
    assert sizes == [1024, 1024, 1]


def test_wrong_image_size_names_fix():
    with pytest.raises(BackflipValueError, match=r"needs images of C x 28 x 28; got .*resize28"):
        build_model("mnist", (3, 32, 32))
    with pytest.raises(BackflipValueError, match="unknown architecture 'vgg'"):
        build_model("vgg")


def test_one_feature_pass_for_concatenated_batch():
    model = build_model("mnist", (3, 28, 28))
    calls = []
    model.features.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    model.domain_forward(torch.zeros(6, 3, 28, 28))
    assert calls == [6]


def test_losses_on_logits_under_bf16_autocast():
    torch.manual_seed(0)
    model = build_model("mnist", (3, 28, 28))
    x = torch.rand(8, 3, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, d = model.domain_forward(x)
        assert y.dtype == torch.bfloat16
        loss = nn.functional.cross_entropy(y.float(), torch.zeros(8, dtype=torch.long)) + \
            nn.functional.binary_cross_entropy_with_logits(d.float(), torch.ones(8))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_grl_reverses_domain_gradient_into_features():
    torch.manual_seed(0)
    x = torch.randn(10, 2)
    dom = torch.cat([torch.zeros(5), torch.ones(5)])

    def feature_grads(grl, lambd):
        torch.manual_seed(1)
        m = build_model("moons")
        if grl is not None:
            m.grl = grl
        else:
            m.grl.set_lambd(lambd)
        _, d = m.domain_forward(x)
        nn.functional.binary_cross_entropy_with_logits(d, dom).backward()
        return m.features[1].weight.grad.clone(), m.discriminator[0].weight.grad.clone()

    g_plain, d_plain = feature_grads(nn.Identity(), None)
    g_rev, d_rev = feature_grads(None, 0.5)
    torch.testing.assert_close(g_rev, -0.5 * g_plain)
    torch.testing.assert_close(d_rev, d_plain)  # the domain head itself is not reversed
    assert g_plain.abs().sum() > 0


def test_adversarial_head_reverses():
    f = torch.randn(4, 3, requires_grad=True)
    head = AdversarialHead(nn.Linear(3, 2), lambd=2.0)
    torch.manual_seed(0)
    control = AdversarialHead(nn.Linear(3, 2), reverse=False)
    control.head.load_state_dict(head.head.state_dict())
    (g1,) = torch.autograd.grad(head(f).sum(), f)
    (g2,) = torch.autograd.grad(control(f).sum(), f)
    torch.testing.assert_close(g1, -2.0 * g2)


def test_dann_over_user_modules():
    m = DANN(nn.Linear(4, 3), nn.Linear(3, 5), nn.Linear(3, 1))
    assert m(torch.zeros(2, 4)).shape == (2, 5)
    assert m.embed(torch.zeros(2, 4)).shape == (2, 3)


def test_dann_names_resolve_lazily():
    import importlib

    import backflip.dann as dann

    for name in dann.__all__:  # each name is the object its private module defines
        homes = [m for m in dann._MODULES
                 if name in getattr(importlib.import_module(f"backflip.dann.{m}"), "__all__", ())]
        assert homes, name
        assert getattr(dann, name) is getattr(
            importlib.import_module(f"backflip.dann.{homes[0]}"), name)
    assert set(dann.__all__) <= set(dir(dann))
    with pytest.raises(AttributeError, match=r"module 'backflip.dann' has no attribute 'nope'"):
        _ = dann.nope
