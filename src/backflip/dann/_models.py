"""The DANN architecture over any modules, the paper's networks, and ``AdversarialHead``.

Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation" (ICML 2015):
a feature extractor ``G_f`` feeds a label predictor ``G_y`` and, through a gradient
reversal layer (GRL), a domain classifier ``G_d``. One backward pass then trains
``G_d`` to tell the domains apart and ``G_f`` to make them indistinguishable:
``dL/dtheta_f = dL_y/dtheta_f - lambd * dL_d/dtheta_f``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from backflip._errors import BackflipValueError
from backflip.dann._config import ARCHITECTURES
from backflip.dann._domain_norm import DomainBatchNorm, split_domains
from backflip.schedules import dann_lambda
from backflip.torch import GradientReversal

__all__ = ["ARCHITECTURES", "DANN", "AdversarialHead", "Standardize", "auto_arch", "build_model",
           "mlp_hidden"]


class Standardize(nn.Module):
    """Per-channel input standardisation ``(x - mean_c) / std_c`` with the statistics as buffers.

    Channel ``c`` is axis 1 (the colour channel of an image batch, the feature of a
    ``(N, D)`` batch). The statistics are registered buffers, so they are saved in and
    restored from checkpoints with the weights; they start as the identity (mean 0,
    std 1) and are set by :meth:`fit`. ``backflip train`` fits them on the SOURCE
    training set (``normalize="source"``) and applies the same map to both domains.

    A channel that barely varies in the source would map the other domain's values far
    out (a border pixel of 8x8 digits with source std 0.001 sends a target value of 1 to
    ``z = 1000``), so each std is floored at :attr:`MIN_STD_RATIO` (0.1) times the median
    std of the channels: ``s_c = max(std_c, 0.1 median_k std_k)``.

    >>> s = Standardize(2).fit(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
    >>> s(torch.tensor([[1.0, 20.0]]))
    tensor([[0., 0.]])
    """

    MIN_STD_RATIO = 0.1

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.constant = 0  # channels found constant by the last fit (left unscaled)
        self.floored = 0  # channels whose std the last fit raised to the floor

    @torch.no_grad()
    def fit(self, x: torch.Tensor | Iterable[torch.Tensor], eps: float = 1e-6) -> Standardize:
        """Set mean and std per channel (axis 1) from ``x`` or from an iterable of batches.

        The sums run in float64 over the batches in order, so one array and the same
        samples streamed in batches of that size give the same statistics. A channel
        whose std is below ``eps`` (constant in the data it is fitted on) is centred
        and left unscaled (std 1): dividing by ``eps`` would blow up any other value it
        takes in the other domain. :attr:`constant` counts such channels, :attr:`floored`
        those whose std was raised to the floor (see the class docstring).
        """
        batches = [x] if isinstance(x, torch.Tensor | np.ndarray) else x
        total = total_sq = None
        count = 0
        for batch in batches:
            b = torch.as_tensor(batch).to(torch.float64)
            b = b.transpose(0, 1).reshape(b.shape[1], -1)  # (C, N * H * W)
            s, sq = b.sum(1), (b * b).sum(1)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += b.shape[1]
        if total is None or count < 2:
            raise BackflipValueError(
                f"Standardize.fit needs at least 2 values per channel; got {count}. Fit it "
                "on the source training set."
            )
        mean = total / count
        var = ((total_sq - count * mean * mean) / (count - 1)).clamp_min(0.0)
        std = var.sqrt()
        constant = std < eps
        if not bool(constant.all()):  # floor the rest at a tenth of their median std
            floor = self.MIN_STD_RATIO * std[~constant].median()
            self.floored = int((~constant & (std < floor)).sum())
            std = torch.where(constant, std, std.clamp_min(floor))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(torch.where(constant, torch.ones_like(std), std).to(self.std.dtype))
        self.constant = int(constant.sum())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


class DANN(nn.Module):
    """Feature extractor + label classifier + domain discriminator behind a GRL.

    ``forward(x)`` returns class logits (so a trained DANN is an ordinary classifier);
    :meth:`domain_forward` takes one batch holding source then target samples and
    returns ``(class_logits, domain_logits)``, computed with ONE pass of the feature
    extractor over the concatenated batch. The domain logits are raw (use
    ``BCEWithLogitsLoss``, safe under autocast). ``grl`` defaults to
    ``GradientReversal(schedule=dann_lambda)``. With ``with_domain=True`` the batch must
    hold equal source and target halves wherever the modules contain a
    :class:`DomainBatchNorm` (each half is normalised by its own statistics).

    >>> m = build_model("moons")
    >>> y, d = m.domain_forward(torch.zeros(6, 2))
    >>> tuple(y.shape), tuple(d.shape)
    ((6, 2), (6,))
    """

    def __init__(self, features: nn.Module, classifier: nn.Module, discriminator: nn.Module,
                 grl: nn.Module | None = None) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.discriminator = discriminator
        self.grl = GradientReversal(schedule=dann_lambda) if grl is None else grl

    def forward(self, x: torch.Tensor, with_domain: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not with_domain:
            return self.classifier(self.features(x))
        with split_domains(self):  # DomainBatchNorm: each half by its own statistics
            f = self.features(x)
            return self.classifier(f), self.discriminator(self.grl(f)).reshape(-1)

    def domain_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class and domain logits of a (source + target) batch in one feature pass.

        The same as ``self(x, with_domain=True)`` (the form DistributedDataParallel needs).
        """
        return self(x, with_domain=True)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The features ``G_f(x)``, flattened to ``(N, D)`` (for plots and selection)."""
        return self.features(x).flatten(1)


class AdversarialHead(nn.Module):
    """Predict any attribute from features through a GRL (to remove it from the features).

    ``head(features)`` returns the attribute logits; its gradient into the features is
    reversed and scaled by λ, so training it with its ordinary loss pushes the
    features to carry LESS information about the attribute (a nuisance or sensitive
    attribute, the domain, or the complement label of the composite-zero experiment).
    ``reverse=False`` gives the same head without the GRL (the control).

    >>> h = AdversarialHead(nn.Linear(4, 2))
    >>> h(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
    """

    def __init__(self, head: nn.Module, lambd: float = 1.0, reverse: bool = True) -> None:
        super().__init__()
        self.head = head
        self.grl = GradientReversal(lambd) if reverse else nn.Identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.grl(features))


def _mnist(in_channels: int, num_classes: int) -> DANN:
    # The paper's MNIST -> MNIST-M network (28 x 28 input).
    features = nn.Sequential(
        Standardize(in_channels), nn.Conv2d(in_channels, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 48, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    )
    classifier = nn.Sequential(nn.Linear(48 * 4 * 4, 100), nn.ReLU(), nn.Linear(100, 100),
                               nn.ReLU(), nn.Linear(100, num_classes))
    discriminator = nn.Sequential(nn.Linear(48 * 4 * 4, 100), nn.ReLU(), nn.Linear(100, 1))
    return DANN(features, classifier, discriminator)


def _mnist_bn(in_channels: int, num_classes: int) -> DANN:
    # The paper's MNIST network with a DomainBatchNorm after every hidden layer of the
    # features, label and domain heads: per-domain batch statistics in training, and at
    # test time the target's own statistics (DSBN / AdaBN), the weights shared.
    features = nn.Sequential(
        Standardize(in_channels),
        nn.Conv2d(in_channels, 32, 5), DomainBatchNorm(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 48, 5), DomainBatchNorm(48), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    )
    classifier = nn.Sequential(nn.Linear(48 * 4 * 4, 100), DomainBatchNorm(100), nn.ReLU(),
                               nn.Linear(100, 100), DomainBatchNorm(100), nn.ReLU(),
                               nn.Linear(100, num_classes))
    discriminator = nn.Sequential(nn.Linear(48 * 4 * 4, 100), DomainBatchNorm(100), nn.ReLU(),
                                  nn.Linear(100, 1))
    return DANN(features, classifier, discriminator)


def _digits32(in_channels: int, num_classes: int) -> DANN:
    # The paper's SVHN / SynNumbers network (32 x 32 colour input).
    features = nn.Sequential(
        Standardize(in_channels),
        nn.Conv2d(in_channels, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 128, 5, padding=2), nn.ReLU(), nn.Flatten(),
    )
    dim = 128 * 7 * 7
    classifier = nn.Sequential(nn.Linear(dim, 3072), nn.ReLU(), nn.Linear(3072, 2048),
                               nn.ReLU(), nn.Linear(2048, num_classes))
    discriminator = nn.Sequential(nn.Linear(dim, 1024), nn.ReLU(), nn.Linear(1024, 1024),
                                  nn.ReLU(), nn.Linear(1024, 1))
    return DANN(features, classifier, discriminator)


def mlp_hidden(in_features: int) -> int:
    """The hidden width of the built-in ``mlp`` for ``in_features`` inputs when none is given.

    ``clip(2^ceil(log2 D), 64, 512)``: as wide as the input, within [64, 512] (the
    two-moons toy's 32 units under-fit real data: 400 bag-of-words or 800 SURF features).

    >>> mlp_hidden(2), mlp_hidden(64), mlp_hidden(100), mlp_hidden(800)
    (64, 64, 128, 512)
    """
    return int(min(512, max(64, 2 ** math.ceil(math.log2(max(in_features, 1))))))


def _moons(in_features: int, num_classes: int, hidden: int = 32) -> DANN:
    # A small MLP for the two moons: two ReLU layers of features, a linear label head and
    # a one-hidden-layer domain head. (The JMLR paper's net has one sigmoid layer of 15
    # units and a logistic domain regressor; trained with our loop it did not adapt.)
    features = nn.Sequential(Standardize(in_features),
                             nn.Linear(in_features, hidden), nn.ReLU(),
                             nn.Linear(hidden, hidden), nn.ReLU())
    discriminator = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    return DANN(features, nn.Linear(hidden, num_classes), discriminator)


def _mlp(in_features: int, num_classes: int, hidden: int = 32) -> DANN:
    # Any vectors: the moons' network, two ReLU layers of ``hidden`` units.
    return _moons(in_features, num_classes, hidden)


def _conv(in_channels: int, num_classes: int, hidden: int = 128) -> DANN:
    # Any image size and channel count: two 3x3 conv blocks (the first halves the size
    # when the image is at least 8 pixels high or wide), then adaptive average pooling
    # to 4 x 4, so 8 x 8 digits and 224 x 224 photos give the same 64 * 16 features.
    features = nn.Sequential(
        Standardize(in_channels), nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),
    )
    dim = 64 * 4 * 4
    classifier = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    discriminator = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    return DANN(features, classifier, discriminator)


def auto_arch(in_shape: tuple[int, ...]) -> str:
    """The built-in network ``arch="auto"`` picks for samples of ``in_shape``.

    Vectors ``(D,)`` get ``"mlp"``; images ``(C, 28, 28)`` the paper's ``"mnist"`` net,
    ``(C, 32, 32)`` its ``"digits32"`` net, and any other ``(C, H, W)`` the generic
    ``"conv"`` net. Other shapes have no built-in network: pass your own ``model=``.

    >>> auto_arch((64,)), auto_arch((1, 8, 8)), auto_arch((3, 28, 28)), auto_arch((3, 224, 224))
    ('mlp', 'conv', 'mnist', 'conv')
    """
    shape = tuple(in_shape)
    if len(shape) == 1:
        return "mlp"
    if len(shape) == 3:
        return {(28, 28): "mnist", (32, 32): "digits32"}.get(shape[1:], "conv")
    raise BackflipValueError(
        f"no built-in network for samples of shape {shape}: the built-in ones take vectors "
        "(N, D) or images (N, C, H, W). Pass your own network, e.g.\n"
        "    model = backflip.dann.DANN(features, classifier, discriminator)\n"
        "    backflip.dann.train(config, model=model, source=..., target=...)\n"
        "(CLI: --model MODULE:FUNCTION)."
    )


def build_model(arch: str, in_shape: tuple[int, ...] | None = None, num_classes: int = 10,
                hidden: int | None = None) -> DANN:
    """A built-in network: the paper's ``"mnist"`` (Cx28x28) and ``"digits32"`` (Cx32x32),
    the generic ``"conv"`` (any CxHxW) and ``"mlp"`` (any D; ``"moons"`` is the same), or
    ``"auto"`` (:func:`auto_arch` picks from ``in_shape``).

    ``"mnist-bn"`` is the MNIST network with a :class:`DomainBatchNorm` after each hidden
    layer (per-domain batch statistics; the target's at test time). ``hidden`` is the
    width of the ``mlp`` (default: :func:`mlp_hidden` of the input size).

    ``features[0]`` is a :class:`Standardize` layer (identity until fitted), so the input
    normalisation a model was trained with travels in its ``state_dict``.

    >>> build_model("mnist", (3, 28, 28))(torch.zeros(2, 3, 28, 28)).shape
    torch.Size([2, 10])
    """
    if arch == "auto":
        if in_shape is None:
            raise BackflipValueError("arch 'auto' picks a network from in_shape; pass in_shape.")
        arch = auto_arch(in_shape)
    if arch in ("moons", "mlp"):
        if in_shape is not None and len(in_shape) != 1:
            raise BackflipValueError(
                f"architecture {arch!r} takes vectors (N, D); got samples of shape "
                f"{tuple(in_shape)}. Use --arch conv (or auto) for images."
            )
        d = in_shape[0] if in_shape else 2
        return _moons(d, num_classes if in_shape else 2, hidden or mlp_hidden(d))
    if arch == "conv":
        if in_shape is None or len(in_shape) != 3:
            raise BackflipValueError(
                f"architecture 'conv' takes images (N, C, H, W); got samples of shape "
                f"{None if in_shape is None else tuple(in_shape)}. Use --arch mlp for vectors."
            )
        return _conv(in_shape[0], num_classes)
    expect = {"mnist": 28, "mnist-bn": 28, "digits32": 32}
    if arch not in expect:
        raise BackflipValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}.")
    shape = in_shape or (3, expect[arch], expect[arch])
    if len(shape) != 3 or shape[1:] != (expect[arch], expect[arch]):
        raise BackflipValueError(
            f"architecture {arch!r} needs images of C x {expect[arch]} x {expect[arch]}; got "
            f"samples of shape {tuple(shape)}. Resize the data (--source-transform/"
            f"--target-transform resize{expect[arch]}) or pick another --arch."
        )
    return {"mnist": _mnist, "mnist-bn": _mnist_bn, "digits32": _digits32}[arch](
        shape[0], num_classes)
