"""examples/pytensor_dann.py: gradients match PyTorch, and adaptation helps on the target."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

from backflip._testing import require_backend

require_backend("pytensor")
torch = require_backend("torch")

_PATH = pathlib.Path(__file__).parents[2] / "examples" / "pytensor_dann.py"


@pytest.fixture(scope="module")
def dann():
    spec = importlib.util.spec_from_file_location("pytensor_dann", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def model(dann):
    """Compiled in PyTensor's default mode (Numba linker): fast steps, slow cold compile."""
    return dann.build_model(dann.init_params(seed=0))


@pytest.fixture(scope="module")
def graph_model(dann):
    """FAST_COMPILE: the same graph evaluated op by op, compiled in about a second."""
    return dann.build_model(dann.init_params(seed=0), mode="FAST_COMPILE")


class _TorchGRL(torch.autograd.Function):
    """A plain reference GRL written in the test, independent of backflip."""

    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.lambd * g, None


def _torch_grads(params, xs, ys, xt, lambd, grl):
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}

    def forward(x):
        h = torch.tanh(torch.tanh(x @ p["W_f1"] + p["b_f1"]) @ p["W_f2"] + p["b_f2"])
        logp = torch.log_softmax(h @ p["W_y"] + p["b_y"], dim=-1)
        r = grl(h, lambd)
        d = torch.sigmoid(torch.tanh(r @ p["W_d1"] + p["b_d1"]) @ p["W_d2"] + p["b_d2"])[:, 0]
        return logp, d

    logp, dom_s = forward(torch.tensor(xs))
    _, dom_t = forward(torch.tensor(xt))
    label = torch.nn.functional.nll_loss(logp, torch.tensor(ys))
    domain = -(torch.log(1 - dom_s).mean() + torch.log(dom_t).mean()) / 2
    loss = label + domain
    loss.backward()
    return float(loss.detach()), [p[k].grad.numpy() for k in params]


def _backflip_grl(x, lambd):
    import backflip.torch as bft

    return bft.reverse_gradient(x, lambd)


@pytest.mark.parametrize(
    "grl", [_TorchGRL.apply, _backflip_grl], ids=["torch-function", "backflip.torch"]
)
def test_gradients_match_pytorch(dann, graph_model, grl):
    model = graph_model
    params = dann.init_params(seed=3)
    model.set_params(params)
    xs, ys, xt, _ = dann.make_moons_domains(n=40, seed=3)
    lambd = 0.7
    loss, *grads = model.loss_and_grads(xs, ys, xt, lambd)
    want_loss, want_grads = _torch_grads(params, xs, ys, xt, lambd, grl)
    assert float(loss) == pytest.approx(want_loss, rel=1e-10)
    for name, got, want in zip(params, grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12, err_msg=name)
    # the reversal is in force: g_f's gradient changes with λ, g_d's does not
    _, *grads0 = model.loss_and_grads(xs, ys, xt, 0.0)
    names = list(params)
    assert not np.allclose(grads0[names.index("W_f1")], grads[names.index("W_f1")])
    np.testing.assert_allclose(grads0[names.index("W_d1")], grads[names.index("W_d1")])


# On a cold cache Numba compiles the training step (about 20-30 s on 2 cores) and may
# hint that np.dot is faster on contiguous arrays (PyTensor's dot of a transposed view).
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")
def test_dann_beats_source_only_on_target(dann, model):
    source_only = dann.train(steps=300, adapt=False, seed=0, model=model)
    adapted = dann.train(steps=300, adapt=True, seed=0, model=model)
    assert source_only["source_acc"] > 0.95 and adapted["source_acc"] > 0.95
    assert adapted["target_acc"] > 0.9
    assert adapted["target_acc"] > source_only["target_acc"] + 0.1


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")
def test_main_prints_both_runs(dann, capsys):
    assert dann.main(["--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "source-only" in out and "DANN" in out and "target acc" in out
