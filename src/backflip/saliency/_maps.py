"""Gradient-based saliency maps (see :mod:`backflip.saliency` for the maths)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip.torch import override_gradients

__all__ = [
    "METHODS",
    "deconvnet",
    "gradient",
    "guided_backprop",
    "input_x_gradient",
    "saliency",
    "smoothgrad",
]

Target = int | Sequence[int] | torch.Tensor | None


def _targets(target: Target, logits: torch.Tensor) -> torch.Tensor:
    n = logits.shape[0]
    if target is None:
        return logits.argmax(dim=1)
    t = torch.as_tensor(target, device=logits.device)
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise BackflipTypeError(
            f"target must hold integer class indices; got dtype {t.dtype}. "
            "Pass e.g. labels.long(), or None for the predicted classes."
        )
    t = t.long().expand(n) if t.ndim == 0 else t.long()
    if t.shape != (n,):
        raise BackflipValueError(
            f"target must be one class index or one per input ({n}); got shape {tuple(t.shape)}."
        )
    k = logits.shape[1]
    if bool(((t < 0) | (t >= k)).any()):
        raise BackflipValueError(
            f"target classes must lie in [0, {k}) for a model with {k} outputs; got {t.tolist()}."
        )
    return t


def _check(model: object, inputs: object) -> None:
    if not isinstance(model, nn.Module):
        raise BackflipTypeError(
            f"saliency methods expect a torch.nn.Module; got {type(model).__name__}."
        )
    if not isinstance(inputs, torch.Tensor) or not inputs.dtype.is_floating_point:
        raise BackflipTypeError(
            "inputs must be a floating-point torch.Tensor batch (N, ...); got "
            f"{type(inputs).__name__}{'' if not hasattr(inputs, 'dtype') else ' ' + str(inputs.dtype)}."
        )


def _grad(model: nn.Module, inputs: torch.Tensor, target: Target, rule: str | None,
          strict: bool = True) -> torch.Tensor:  # fmt: skip
    _check(model, inputs)
    x = inputs.detach().clone().requires_grad_(True)
    ctx = override_gradients(model, rule, strict=strict) if rule else contextlib.nullcontext()
    with torch.enable_grad(), ctx:
        logits = model(x)
        if logits.ndim != 2:
            raise BackflipValueError(
                f"the model must return class scores (N, classes); got shape {tuple(logits.shape)}."
            )
        score = logits.gather(1, _targets(target, logits)[:, None]).sum()
        (g,) = torch.autograd.grad(score, x)
    return g


def gradient(model: nn.Module, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
    """Plain gradient of the target class score: ``d logits[i, t_i] / d inputs[i]``.

    ``target``: one class for all, one per input, or None for the predicted class.

    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> with torch.no_grad(): _ = net.weight.copy_(torch.tensor([[1., 2., 3.], [0., 0., 1.]]))
    >>> gradient(net, torch.zeros(1, 3), target=0)
    tensor([[1., 2., 3.]])
    """
    return _grad(model, inputs, target, None)


def guided_backprop(
    model: nn.Module, inputs: torch.Tensor, target: Target = None, *, strict: bool = True
) -> torch.Tensor:
    """Guided backpropagation: the gradient with every nonlinearity's backward ``guided``.

    For ReLU, ``dL/dx = g * 1[x > 0] * 1[g > 0]``. ``strict`` as in
    :func:`backflip.torch.override_gradients`.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> guided_backprop(net, torch.randn(5, 3), target=1).shape
    torch.Size([5, 3])
    """
    return _grad(model, inputs, target, "guided", strict)


def deconvnet(
    model: nn.Module, inputs: torch.Tensor, target: Target = None, *, strict: bool = True
) -> torch.Tensor:
    """Deconvnet map: every nonlinearity's backward is ``dL/dx = g * 1[g > 0]``.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> deconvnet(net, torch.randn(5, 3), target=[0, 1, 0, 1, 0]).shape
    torch.Size([5, 3])
    """
    return _grad(model, inputs, target, "deconvnet", strict)


def input_x_gradient(model: nn.Module, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
    """``inputs * gradient(model, inputs, target)``.

    >>> import torch
    >>> net = torch.nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad(): _ = net.weight.fill_(3.0)
    >>> input_x_gradient(net, torch.tensor([[1.0, -2.0]]), 0)
    tensor([[ 3., -6.]])
    """
    g = gradient(model, inputs, target)
    return inputs.detach() * g


def smoothgrad(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Target = None,
    *,
    n: int = 25,
    noise: float = 0.15,
    method: str = "gradient",
    seed: int = 0,
) -> torch.Tensor:
    """SmoothGrad: the mean of ``method``'s maps over ``n`` noisy copies of the inputs.

    Noise is Gaussian with standard deviation ``noise * (max(x_i) - min(x_i))`` per
    sample; ``target=None`` takes the predicted class of the clean input.

    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> smoothgrad(net, torch.randn(2, 3), 0, n=4, method="guided_backprop").shape
    torch.Size([2, 3])
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise BackflipValueError(f"smoothgrad's n must be an int >= 1; got {n!r}.")
    if not (isinstance(noise, int | float) and noise >= 0 and noise == noise):
        raise BackflipValueError(f"smoothgrad's noise must be a float >= 0; got {noise!r}.")
    if method not in METHODS or method == "smoothgrad":
        raise BackflipValueError(
            f"smoothgrad's method must be one of {', '.join(m for m in METHODS if m != 'smoothgrad')}"
            f"; got {method!r}."
        )
    _check(model, inputs)
    fn = METHODS[method]
    if target is None:
        with torch.no_grad():
            target = model(inputs).argmax(dim=1)
    x = inputs.detach()
    flat = x.reshape(x.shape[0], -1)
    span = (flat.max(dim=1).values - flat.min(dim=1).values).reshape(-1, *[1] * (x.ndim - 1))
    gen = torch.Generator(device=x.device).manual_seed(seed)
    total = torch.zeros_like(x)
    for _ in range(n):
        eps = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        total += fn(model, x + eps * noise * span, target)
    return total / n


METHODS = {
    "gradient": gradient,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "input_x_gradient": input_x_gradient,
    "smoothgrad": smoothgrad,
}
"""Method name -> function, all ``fn(model, inputs, target) -> map``."""


def saliency(
    model: nn.Module, inputs: torch.Tensor, target: Target = None, method: str = "guided_backprop",
    **kwargs: object,
) -> torch.Tensor:  # fmt: skip
    """Dispatch by name: ``saliency(model, x, t, "guided_backprop")``; names in ``METHODS``.

    >>> import torch
    >>> saliency(torch.nn.Linear(3, 2), torch.zeros(4, 3), 1, "gradient").shape
    torch.Size([4, 3])
    """
    if method not in METHODS:
        raise BackflipValueError(
            f"unknown saliency method {method!r}; use one of {', '.join(METHODS)}."
        )
    return METHODS[method](model, inputs, target, **kwargs)
