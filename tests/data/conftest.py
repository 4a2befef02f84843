"""Fixtures of the data tests: small fake MNIST files and a cache built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from backflip import data


@pytest.fixture(scope="session")
def fake_mnist_dir(tmp_path_factory) -> Path:
    """Four small IDX files (300 train, 100 test) of rendered digits."""
    return data.write_fake_mnist(tmp_path_factory.mktemp("fake-mnist"), n_train=300, n_test=100)


@pytest.fixture
def fake_root(tmp_path, fake_mnist_dir) -> Path:
    """A fresh cache root holding the fake MNIST (installed with verify=False)."""
    root = tmp_path / "cache"
    data.fetch("mnist", root=root, source=fake_mnist_dir, verify=False)
    return root


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache: $BACKFLIP_DATA points at a scratch folder."""
    monkeypatch.setenv("BACKFLIP_DATA", str(tmp_path / "default-cache"))
