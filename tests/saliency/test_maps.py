"""backflip.saliency: maps equal autograd / the hand rule / Captum; errors; PNG grids."""

from __future__ import annotations

import numpy as np
import pytest

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip import saliency  # noqa: E402
from backflip._errors import BackflipTypeError, BackflipValueError  # noqa: E402

nn = torch.nn
F = torch.nn.functional


def relu_module_cnn():
    """Built only from nn.ReLU modules (what Captum's module hooks can see)."""
    return nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3),
    )  # fmt: skip


def test_gradient_equals_autograd(helpers, seeded):
    model, x, t = helpers.FunctionalCNN(), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    (expected,) = torch.autograd.grad(out[torch.arange(4), t].sum(), xr)
    got = saliency.gradient(model, x, t)
    assert got.shape == x.shape and not got.requires_grad
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(saliency.input_x_gradient(model, x, t), x * expected)


@pytest.mark.parametrize("name", ["mlp", "cnn", "mixed"])
def test_guided_and_deconvnet_equal_hand_rule(models, helpers, seeded, name):
    factory, parts, shape = models[name]
    model, x, t = factory(), torch.randn(shape), torch.tensor([2, 1, 0, 1])
    for fn, rule in ((saliency.guided_backprop, "guided"), (saliency.deconvnet, "deconvnet")):
        torch.testing.assert_close(fn(model, x, t), helpers.hand_rule(parts(model), x, t, rule))


def test_target_forms(helpers, seeded):
    model, x = helpers.mlp(), torch.randn(3, 5)
    pred = model(x).argmax(1)
    torch.testing.assert_close(saliency.gradient(model, x), saliency.gradient(model, x, pred))
    torch.testing.assert_close(
        saliency.gradient(model, x, 1), saliency.gradient(model, x, [1, 1, 1])
    )
    torch.testing.assert_close(
        saliency.saliency(model, x, 1, "deconvnet"), saliency.deconvnet(model, x, 1)
    )


def test_smoothgrad(helpers, seeded):
    model, x = helpers.mlp(), torch.rand(2, 5)
    gen = torch.Generator().manual_seed(3)
    span = (x.max(1).values - x.min(1).values)[:, None]
    expected = (
        sum(
            saliency.guided_backprop(model, x + torch.randn(x.shape, generator=gen) * 0.2 * span, 1)
            for _ in range(5)
        )
        / 5
    )
    got = saliency.smoothgrad(model, x, 1, n=5, noise=0.2, method="guided_backprop", seed=3)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        saliency.smoothgrad(model, x, 0, n=3, noise=0.0), saliency.gradient(model, x, 0)
    )


def test_agrees_with_module_hooks_on_nn_relu_model(helpers, seeded):
    model, x, t = relu_module_cnn(), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    for ours, rule in ((saliency.guided_backprop, "guided"), (saliency.deconvnet, "deconvnet")):
        expected = helpers.module_hook_attribution(model, x, t, rule)
        torch.testing.assert_close(ours(model, x, t), expected)
        assert not torch.allclose(expected, saliency.gradient(model, x, t))


def test_module_hooks_miss_functional_relu_ours_do_not(helpers, seeded):
    """The silent failure this package exists for: hooks see no nn.ReLU, keep defaults."""
    model, x, t = helpers.FunctionalCNN(), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    plain = saliency.gradient(model, x, t)
    hooked = helpers.module_hook_attribution(model, x, t, "guided")
    ours = saliency.guided_backprop(model, x, t)
    torch.testing.assert_close(hooked, plain)  # module hooks: default gradients, silently
    assert not torch.allclose(ours, plain)
    torch.testing.assert_close(ours, helpers.hand_rule(model.linear_parts(), x, t, "guided"))


# Captum (a dev dependency): the same two facts with the real library.
@pytest.mark.filterwarnings("ignore::UserWarning")  # Captum warns about its own hook set-up
@pytest.mark.parametrize("functional", [False, True])
def test_captum(helpers, seeded, functional):
    captum_attr = require_backend("captum.attr")
    model = helpers.FunctionalCNN() if functional else relu_module_cnn()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])
    theirs = captum_attr.GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=t)
    if functional:
        torch.testing.assert_close(theirs.detach(), saliency.gradient(model, x, t))
    else:
        torch.testing.assert_close(saliency.guided_backprop(model, x, t), theirs.detach())


def test_strict_saliency_raises_on_uncovered():
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2))
    with pytest.raises(BackflipValueError, match=r"module '1' \(Tanh\)"):
        saliency.guided_backprop(model, torch.ones(1, 3), 0)
    assert saliency.guided_backprop(model, torch.ones(1, 3), 0, strict=False).shape == (1, 3)


def test_errors(helpers):
    model, x = helpers.mlp(), torch.ones(2, 5)
    with pytest.raises(BackflipValueError, match=r"target classes must lie in \[0, 3\)"):
        saliency.gradient(model, x, 3)
    with pytest.raises(BackflipValueError, match="one class index or one per input \\(2\\)"):
        saliency.gradient(model, x, [0, 1, 2])
    with pytest.raises(BackflipTypeError, match="target must hold integer class indices"):
        saliency.gradient(model, x, torch.tensor([0.0, 1.0]))
    with pytest.raises(BackflipTypeError, match="inputs must be a floating-point"):
        saliency.gradient(model, torch.ones(2, 5, dtype=torch.long), 0)
    with pytest.raises(BackflipTypeError, match=r"expect a torch\.nn\.Module; got function"):
        saliency.gradient(lambda v: v, x, 0)
    with pytest.raises(BackflipValueError, match="must return class scores"):
        saliency.gradient(nn.Identity(), torch.ones(2), 0)
    with pytest.raises(BackflipValueError, match="unknown saliency method 'gradcam'"):
        saliency.saliency(model, x, 0, "gradcam")
    with pytest.raises(BackflipValueError, match="n must be an int >= 1; got 0"):
        saliency.smoothgrad(model, x, 0, n=0)
    with pytest.raises(BackflipValueError, match="noise must be a float >= 0; got -1"):
        saliency.smoothgrad(model, x, 0, noise=-1)
    with pytest.raises(BackflipValueError, match=r"method must be one of .*got 'smoothgrad'"):
        saliency.smoothgrad(model, x, 0, method="smoothgrad")


def test_save_grid_writes_png(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    x, m = rng.random((5, 3, 16, 16)), rng.standard_normal((5, 3, 16, 16))
    path = saliency.save_grid(tmp_path / "sub" / "g.png", torch.tensor(x), m,
                              titles=[f"y={i}" for i in range(5)], per_row=2, title="t")  # fmt: skip
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > img.size[1] > 100
        arr = np.asarray(img.convert("RGB"))
    assert arr.std() > 10  # not a blank image
    with pytest.raises(BackflipValueError, match="same batch size and image size"):
        saliency.save_grid(tmp_path / "bad.png", x, m[:2])
    with pytest.raises(BackflipValueError, match="got 1 titles for 5 samples"):
        saliency.save_grid(tmp_path / "bad.png", x, m, titles=["a"])


@pytest.mark.slow  # a child process imports torch
def test_torch_does_not_import_saliency():
    import subprocess
    import sys

    code = "import sys, backflip.torch; print('backflip.saliency' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
