"""The DANN architecture over any modules, the paper's networks, and ``AdversarialHead``.

Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation" (ICML 2015):
a feature extractor ``G_f`` feeds a label predictor ``G_y`` and, through a gradient
reversal layer (GRL), a domain classifier ``G_d``. One backward pass then trains
``G_d`` to tell the domains apart and ``G_f`` to make them indistinguishable:
``dL/dtheta_f = dL_y/dtheta_f - lambd * dL_d/dtheta_f``.
"""

from __future__ import annotations

import torch
from torch import nn

from backflip._errors import BackflipValueError
from backflip.dann._domain_norm import DomainBatchNorm, split_domains
from backflip.schedules import dann_lambda
from backflip.torch import GradientReversal

__all__ = ["ARCHITECTURES", "DANN", "AdversarialHead", "Standardize", "build_model"]

ARCHITECTURES = ("mnist", "mnist-bn", "digits32", "moons")


class Standardize(nn.Module):
    """Per-channel input standardisation ``(x - mean_c) / std_c`` with the statistics as buffers.

    Channel ``c`` is axis 1 (the colour channel of an image batch, the feature of a
    ``(N, D)`` batch). The statistics are registered buffers, so they are saved in and
    restored from checkpoints with the weights; they start as the identity (mean 0,
    std 1) and are set by :meth:`fit`. ``backflip train`` fits them on the SOURCE
    training set (``normalize="source"``) and applies the same map to both domains.

    >>> s = Standardize(2).fit(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
    >>> s(torch.tensor([[1.0, 20.0]]))
    tensor([[0., 0.]])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, eps: float = 1e-6) -> Standardize:
        """Set mean and std per channel (axis 1) from ``x``; returns ``self``."""
        x = torch.as_tensor(x, dtype=torch.float32)
        for c in range(x.shape[1]):
            self.mean[c] = x[:, c].mean()
            self.std[c] = x[:, c].std().clamp_min(eps)
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


def _moons(in_features: int, num_classes: int, hidden: int = 32) -> DANN:
    # A small MLP for the two moons: two ReLU layers of features, a linear label head and
    # a one-hidden-layer domain head. (The JMLR paper's net has one sigmoid layer of 15
    # units and a logistic domain regressor; trained with our loop it did not adapt.)
    features = nn.Sequential(Standardize(in_features),
                             nn.Linear(in_features, hidden), nn.ReLU(),
                             nn.Linear(hidden, hidden), nn.ReLU())
    discriminator = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
    return DANN(features, nn.Linear(hidden, num_classes), discriminator)


def build_model(arch: str, in_shape: tuple[int, ...] | None = None, num_classes: int = 10,
                hidden: int = 32) -> DANN:
    """One of the paper's networks: ``"mnist"`` (Cx28x28), ``"digits32"`` (Cx32x32), ``"moons"``.

    ``"mnist-bn"`` is the MNIST network with a :class:`DomainBatchNorm` after each hidden
    layer (per-domain batch statistics; the target's at test time).

    ``features[0]`` is a :class:`Standardize` layer (identity until fitted), so the input
    normalisation a model was trained with travels in its ``state_dict``.

    >>> build_model("mnist", (3, 28, 28))(torch.zeros(2, 3, 28, 28)).shape
    torch.Size([2, 10])
    """
    if arch == "moons":
        return _moons(in_shape[0] if in_shape else 2, num_classes if in_shape else 2, hidden)
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
