"""The model contract of :func:`backflip.dann.train`, checked on a probe batch before the first step.

What the trainer needs from a model, and nothing more:

* ``model(x)`` returns the class logits ``(N, num_classes)`` of a batch ``x``;
* ``model.features`` and ``model.classifier`` are modules with
  ``model.classifier(model.features(x))`` equal to ``model(x)``: evaluation, the
  selection criteria and the feature plots read the features this way;
* for ``method="dann"`` (the method that uses the model's own discriminator; the
  other methods bring their heads, :mod:`backflip.dann._methods`):
  ``model(x, with_domain=True)`` takes ONE batch holding the
  source samples then the target samples and returns ``(class_logits, domain_logits)``
  with ``domain_logits`` of shape ``(N,)`` (or ``(N, 1)``), raw logits (the trainer
  applies ``BCEWithLogits``); ``model.grl`` has ``set_lambd(value)`` (the trainer
  drives λ) and stands between the features and the domain head, so that the domain
  loss reaches the features as ``-λ`` times its gradient and not at all when λ is 0.

:class:`backflip.dann.DANN` built from any ``features``, ``classifier`` and
``discriminator`` modules (with batch norm, dropout, :class:`DomainBatchNorm`, or none)
meets it. The checks run in eval mode without touching a running statistic or a
``.grad``, so they do not change the run.
"""

from __future__ import annotations

import torch
from torch import nn

from backflip._errors import BackflipTypeError, BackflipValueError
from backflip.dann._methods import get_method

__all__ = ["check_model"]

_EXAMPLE = ("Build it as backflip.dann.DANN(features, classifier, discriminator), which "
            "puts the GRL between the features and the discriminator.")


def _fail(what: str) -> None:
    raise BackflipValueError(f"the model does not meet the trainer's contract: {what}")


def check_model(model: nn.Module, xs: torch.Tensor, xt: torch.Tensor, num_classes: int,
                method: str) -> None:
    """Check ``model`` against the trainer's contract (the module docstring) on a probe batch.

    ``xs`` holds a few source samples, ``xt`` a few target samples. Raises
    :class:`~backflip.BackflipValueError` naming the missing or wrong part.

    >>> import torch
    >>> from torch import nn
    >>> from backflip.dann import DANN
    >>> good = DANN(nn.Linear(2, 4), nn.Linear(4, 3), nn.Linear(4, 1))
    >>> check_model(good, torch.zeros(2, 2), torch.ones(2, 2), num_classes=3, method="dann")
    >>> check_model(good, torch.zeros(2, 2), torch.ones(2, 2), num_classes=2, method="dann")
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: the model does not meet the trainer's contract: its class logits have 3 columns but the data has 2 classes. Make the classifier's last layer output 2 (e.g. nn.Linear(hidden, 2)), or check the labels.
    """
    if not isinstance(model, nn.Module):
        raise BackflipTypeError(
            f"model must be a torch.nn.Module (a backflip.dann.DANN); got "
            f"{type(model).__name__}. {_EXAMPLE}"
        )
    for part in ("features", "classifier"):
        if not isinstance(getattr(model, part, None), nn.Module):
            _fail(f"it has no `{part}` module ({type(model).__name__}.{part}); evaluation "
                  "computes model.classifier(model.features(x)). " + _EXAMPLE)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(xs)
            if not isinstance(logits, torch.Tensor):
                _fail(f"model(x) must return the class logits as one tensor (N, "
                      f"{num_classes}); it returned {type(logits).__name__}. Return the "
                      "domain logits only when called as model(x, with_domain=True).")
            if logits.dim() != 2 or logits.shape[0] != len(xs):
                _fail(f"model(x) of {len(xs)} samples must return logits of shape "
                      f"({len(xs)}, {num_classes}); got {tuple(logits.shape)}.")
            if logits.shape[1] != num_classes:
                _fail(f"its class logits have {logits.shape[1]} columns but the data has "
                      f"{num_classes} classes. Make the classifier's last layer output "
                      f"{num_classes} (e.g. nn.Linear(hidden, {num_classes})), or check "
                      "the labels.")
            again = model.classifier(model.features(xs))
            if not isinstance(again, torch.Tensor) or again.shape != logits.shape:
                _fail("model.classifier(model.features(x)) must give the class logits as "
                      f"model(x) does (shape {tuple(logits.shape)}); got "
                      f"{getattr(again, 'shape', type(again).__name__)}.")
        if get_method(method).uses_discriminator:
            _check_domain_path(model, torch.cat([xs, xt]))
    finally:
        model.train(was_training)


def _check_domain_path(model: nn.Module, x: torch.Tensor) -> None:
    grl = getattr(model, "grl", None)
    if not callable(getattr(grl, "set_lambd", None)):
        _fail("method 'dann' drives λ through model.grl.set_lambd(value), and the model has "
              "no such `grl`. " + _EXAMPLE)
    try:
        out = model(x, with_domain=True)
    except TypeError as err:
        _fail(f"model(x, with_domain=True) failed ({err}); forward must accept with_domain "
              "and then return (class_logits, domain_logits). " + _EXAMPLE)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        _fail("model(x, with_domain=True) must return (class_logits, domain_logits); got "
              f"{type(out).__name__}.")
    _logits, dom = out
    if dom.numel() != len(x):
        _fail(f"the domain logits of a batch of {len(x)} must have shape ({len(x)},) or "
              f"({len(x)}, 1), one logit per sample; got {tuple(dom.shape)}.")
    feats = [p for p in model.features.parameters() if p.requires_grad]
    heads = [p for n, p in model.named_parameters() if p.requires_grad
             and not n.startswith(("features.", "classifier."))]
    saved = float(torch.as_tensor(getattr(grl, "lambd", 1.0)))

    def grads(lambd: float, params: list[nn.Parameter]) -> list[torch.Tensor | None]:
        grl.set_lambd(lambd)
        _, d = model(x, with_domain=True)
        if not d.requires_grad:  # detached: no parameter gets anything
            return [None] * len(params)
        return list(torch.autograd.grad(d.float().sum(), params, allow_unused=True))

    try:
        if heads and all(g is None or not g.any() for g in grads(1.0, heads)):
            _fail("the domain head gets no gradient from the domain logits (a detached "
                  "head, or logits that do not come from it).")
        if feats:
            at_one, at_zero = grads(1.0, feats), grads(0.0, feats)
            if all(g is None or not g.any() for g in at_one):
                _fail("the features get no gradient from the domain head at λ = 1, so "
                      "nothing aligns the domains (a detach between the features and "
                      "model.grl?). " + _EXAMPLE)
            if any(g is not None and g.any() for g in at_zero):
                _fail("the domain loss reaches the features even at λ = 0, so it does not "
                      "pass through model.grl (the reversal would not act on it). " + _EXAMPLE)
        disc = getattr(model, "discriminator", None)
        if isinstance(disc, nn.Module):
            grl.set_lambd(1.0)
            f = model.features(x[:2]).detach().requires_grad_(True)
            (through,) = torch.autograd.grad(disc(grl(f)).float().sum(), f)
            (plain,) = torch.autograd.grad(disc(f).float().sum(), f)
            if plain.any() and not torch.allclose(through, -plain, rtol=1e-4, atol=1e-6):
                _fail("model.grl does not reverse the gradient (expected -1 x the "
                      "discriminator's gradient at λ = 1). Use "
                      "backflip.torch.GradientReversal, which DANN builds by default.")
    finally:
        grl.set_lambd(saved)
