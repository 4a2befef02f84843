"""Shared fixtures for the DANN tests: tiny in-memory domains and a tiny fake MNIST cache."""

from __future__ import annotations

import numpy as np
import pytest

from backflip._testing import require_backend

require_backend("torch")


@pytest.fixture
def moons_domains():
    """(source train, target train, target test): 120 / 120 / 80 samples of the moons."""
    from backflip import data

    s = data.load("moons", limit=120)
    t = data.load("moons-rotated", limit=120)
    tt = data.load("moons-rotated", "test", limit=80)
    return s, t, tt


@pytest.fixture
def tiny_config():
    """A TrainConfig builder for 2-epoch moons runs on one thread."""
    from backflip.dann import TrainConfig

    def make(**kw):
        base = dict(source="moons", target="moons-rotated", epochs=2, batch_size=20,
                    progress=False, threads=1, eval_limit=100, optimizer="adam", lr=0.01,
                    plots=False, min_epoch_steps=1)
        return TrainConfig(**{**base, **kw})

    return make


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory):
    """A data cache holding a tiny fake MNIST (120 train / 60 test) from write_fake_mnist."""
    from backflip import data

    raw = tmp_path_factory.mktemp("fake-idx")
    root = tmp_path_factory.mktemp("cache")
    data.write_fake_mnist(raw, n_train=120, n_test=60, seed=0)
    data.fetch("mnist", root=root, source=raw, verify=False)
    return root


@pytest.fixture
def images():
    """Random images batch helper: images(n, c, h) -> float32 array."""
    return lambda n, c=3, h=28: np.random.default_rng(0).random((n, c, h, h), np.float32)
