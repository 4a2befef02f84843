"""torch.export of a model with a GradientReversal: the exported forward is the identity.

torch.export traces the forward only: the reversal appears as ``aten.view_as`` and its
custom backward is not part of the exported program, so differentiating the exported
module gives the *plain* gradient (no reversal). Export for inference; train eagerly or
with torch.compile.
"""

from __future__ import annotations

from backflip._testing import require_backend

torch = require_backend("torch")

from backflip.torch import GradientReversal  # noqa: E402


def test_export_forward_is_identity_and_backward_is_plain():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), GradientReversal(0.5), torch.nn.Linear(2, 1))
    plain = torch.nn.Sequential(model[0], torch.nn.Identity(), model[2])
    x = torch.randn(4, 3)
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert targets == {"aten.linear.default", "aten.view_as.default"}
    assert torch.equal(ep.state_dict["1.lambd"], torch.tensor(0.5))
    exported = ep.module()
    assert torch.equal(exported(x), model(x))

    def first_grad(m):
        m.zero_grad()
        m(x).sum().backward()
        return dict(m.named_parameters())["0.weight"].grad.clone()

    eager, via_export, no_grl = first_grad(model), first_grad(exported), first_grad(plain)
    assert torch.allclose(eager, -0.5 * no_grl)
    assert torch.allclose(via_export, no_grl)  # the custom backward is not exported
