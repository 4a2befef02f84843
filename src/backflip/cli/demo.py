"""``backflip demo``: a small, printed demonstration of the gradient reversal layer."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="show what the gradient reversal layer does, in numbers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backflip._optional import require

    torch = require("torch", purpose="backflip demo")

    from backflip.torch import reverse_gradient

    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    (reverse_gradient(x, lambd=0.5) ** 2).sum().backward()
    print("x                          :", x.tolist())
    print("grad of sum(x^2)           :", plain.tolist())
    print("grad through GRL, lambd=0.5:", x.grad.tolist(), "(= -0.5 x the plain gradient)")
    return 0
