"""The search space of :func:`backflip.dann.tune`: ranges, the default space, its checks.

A space maps :class:`~backflip.dann.TrainConfig` field names to what a trial may draw:

* a list or tuple of choices (categorical): ``"method": ("dann", "mdd")``;
* ``Range(low, high, log=False)``: a float in ``[low, high]`` (``log=True``: uniform in
  ``log x``, for scales such as a learning rate);
* ``IntRange(low, high, log=False)``: an int in ``[low, high]``, for int fields.

A trial draws ``method`` first, then the other entries in the space's order. An entry
that TrainConfig refuses together with the values drawn before it (``target_entropy``
under ``source-only``, which trains on no target data) is not drawn in that trial: it
keeps the base config's value. Everything is checked before any training
(:func:`check_space`); the CLI writes a space as one string (:func:`parse_space`).

>>> space = parse_space("lr=1e-3:1e-1:log,method=dann|source-only")
>>> space["lr"], space["method"]
(Range(low=0.001, high=0.1, log=True), ('dann', 'source-only'))
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from backflip._errors import BackflipError, BackflipTypeError, BackflipValueError
from backflip.dann._config import METHODS, TrainConfig
from backflip.dann._methods import get_method

__all__ = ["DEFAULT_CRITERION", "DEFAULT_SPACE", "IntRange", "Range", "check_space", "draw",
           "needs_target_labels", "parse_space", "space_to_json"]

#: Fields a space may not hold: tune gives every trial its own folder and a fresh start.
_OWNED = {"out": "tune gives every trial its own run folder, out/trials/NNNN",
          "resume": "every trial starts afresh; continue a study with the same storage "
                    "and study_name instead"}


@dataclass(frozen=True)
class Range:
    """A float in ``[low, high]``; ``log=True`` draws uniformly in ``log x`` (needs ``low > 0``).

    >>> Range(1e-4, 1e-1, log=True)
    Range(low=0.0001, high=0.1, log=True)
    """

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    """An int in ``[low, high]``; ``log=True`` draws uniformly in ``log x`` (needs ``low >= 1``).

    >>> IntRange(32, 512, log=True).high
    512
    """

    low: int
    high: int
    log: bool = False


Spec = Range | IntRange | tuple[Any, ...]


def needs_target_labels(method: str) -> bool:
    """Whether ``method`` trains on target labels (``target-only``): never searched.

    >>> needs_target_labels("target-only"), needs_target_labels("dann")
    (True, False)
    """
    return get_method(method).needs_target_labels


#: The space :func:`backflip.dann.tune` searches when given none; each entry, why:
#:
#: * ``method``: every method that needs no target labels, ``source-only`` included, so
#:   the pick can fall back to no adaptation where adapting hurts;
#: * ``lambd_max`` 0.03 to 1 (log): the weight of the transfer term, from barely there to
#:   the paper's 1; too high a weight is the usual cause of a collapse;
#: * ``gamma`` 3 to 30 (log): how fast λ ramps up, from slow to almost at once (the
#:   paper's 10 in the middle);
#: * ``lr`` 1e-4 to 0.1 (log): around the paper's 0.01, a decade each way and more below;
#: * ``hidden`` 32 to 512 (log): the width of the built-in mlp (moons, vectors); other
#:   networks ignore it, and tune leaves it out when you pass your own model;
#: * ``target_entropy`` 0, 0.1 or 0.3: entropy minimisation off, or at the weights that
#:   helped in our presets (drawn only for methods that train on the target).
class _FrozenSpace(Mapping):
    """tune's default search space, read-only: ``{**DEFAULT_SPACE, "lr": ...}`` is a copy to change.

    >>> sorted(DEFAULT_SPACE)[:3]
    ['gamma', 'hidden', 'lambd_max']
    """

    def __init__(self, entries: dict[str, Spec]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> Spec:
        return self._entries[name]

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"DEFAULT_SPACE({self._entries!r})"


DEFAULT_SPACE: Mapping[str, Spec] = _FrozenSpace({
    "method": tuple(m for m in METHODS if not needs_target_labels(m)),
    "lambd_max": Range(0.03, 1.0, log=True),
    "gamma": Range(3.0, 30.0, log=True),
    "lr": Range(1e-4, 1e-1, log=True),
    "hidden": IntRange(32, 512, log=True),
    "target_entropy": (0.0, 0.1, 0.3),
})

#: What :func:`backflip.dann.tune` maximises or minimises unless told otherwise. Measured
#: as the pick across all the methods on seven presets (docs/results.md; 3 seeds each,
#: mnist-mnistm 1):
#: source validation accuracy and snd never fell below source-only (worst -0.001, on
#: adult-sex), and source validation gained more (+0.037 on average, up to +0.20 on
#: mfeat-mnist; snd +0.010), though both kept source-only where the best methods were
#: 0.17-0.48 above it; target entropy gained the most on average (+0.125) but picked mcc, which
#: minimises it, for -0.08 under adult-sex's label shift; dev_risk's importance weights
#: blew up where the domains are nearly separable (values of -900 to 900 on adult-sex).
#: The safe default; pass another to trade safety for gain.
DEFAULT_CRITERION = "source_val_acc"

_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _field_type(name: str) -> type:
    # The field's type without its "| None".
    tp = typing.get_type_hints(TrainConfig)[name]
    if isinstance(tp, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _a(kind: type) -> str:
    # "an int", "a float"
    return ("an " if kind.__name__[0] in "aeiou" else "a ") + kind.__name__


def _is_number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, int | float)


def _check_entry(name: str, spec: Any) -> Spec:
    # The entry's own form (the field, the range's type and bounds); returns it normalised.
    if name not in _FIELDS:
        raise BackflipValueError(
            f"space: unknown TrainConfig field {name!r}; a space maps field names (e.g. "
            f"'lr', 'lambd_max') to ranges. Valid names: {', '.join(sorted(_FIELDS))}."
        )
    if name in _OWNED:
        raise BackflipValueError(f"space: {name!r} cannot be searched ({_OWNED[name]}); "
                                 f"remove it from the space.")
    kind = _field_type(name)
    if isinstance(spec, Range | IntRange):
        want = IntRange if kind is int else Range if kind is float else None
        if want is None:
            raise BackflipTypeError(
                f"space: {name!r} is {_a(kind)} field, so it takes a list of choices, "
                f"not {spec!r}; e.g. space={{{name!r}: [...]}} (CLI: {name}=a|b)."
            )
        if type(spec) is not want:
            fix = (f"IntRange({spec.low!r}, {spec.high!r}, log={spec.log}) (CLI: "
                   f"{name}=LOW:HIGH:int)" if want is IntRange else
                   f"Range({spec.low!r}, {spec.high!r}, log={spec.log}) (CLI: {name}=LOW:HIGH)")
            raise BackflipTypeError(
                f"space: {name!r} is {_a(kind)} field; got {spec!r}. Use {fix}.")
        num = int if want is IntRange else float
        for end in (spec.low, spec.high):
            if not _is_number(end, num) or not math.isfinite(end):
                raise BackflipTypeError(
                    f"space: the bounds of {name!r} must be finite {num.__name__}s; got "
                    f"{spec!r}.")
        if not spec.low < spec.high:
            raise BackflipValueError(
                f"space: {name!r} needs low < high; got {spec!r}. For one fixed value set "
                f"it on the config (or pass a single choice, [{spec.low!r}]).")
        if spec.log and spec.low <= 0:
            raise BackflipValueError(
                f"space: a log range needs low > 0; got {name!r} {spec!r}. Raise low (e.g. "
                f"{1e-4 if num is float else 1}) or pass log=False.")
        return spec
    if isinstance(spec, list | tuple):
        if not spec:
            raise BackflipValueError(f"space: {name!r} has no choices; pass at least one.")
        for value in spec:
            if value is not None and not isinstance(value, bool | int | float | str):
                raise BackflipTypeError(
                    f"space: the choices of {name!r} must be plain values (None, bool, int, "
                    f"float, str); got {value!r} of type {type(value).__name__}.")
        return tuple(spec)
    raise BackflipTypeError(
        f"space: {name!r} must map to a list of choices, a Range or an IntRange; got "
        f"{spec!r} of type {type(spec).__name__}. E.g. {{'lr': Range(1e-4, 1e-1, log=True)}}."
    )


def _representatives(spec: Spec) -> tuple[Any, ...]:
    # The values that stand for an entry in the checks: a range's ends, every choice.
    return (spec.low, spec.high) if isinstance(spec, Range | IntRange) else spec


def _refusal(values: dict[str, Any]) -> BackflipError | None:
    # TrainConfig's error for these values, or None where it accepts them.
    try:
        TrainConfig(**values)
    except BackflipError as err:
        return err
    return None


def _order(space: Mapping[str, Spec]) -> list[str]:
    return sorted(space, key=lambda n: n != "method")  # method first; the rest as given


def draw(space: Mapping[str, Spec], base: TrainConfig,
         suggest: Callable[[str, Spec], Any]) -> dict[str, Any]:
    """The values of one trial: ``suggest(name, spec)`` for each entry the trial takes.

    An entry is drawn only where TrainConfig accepts each of its representative values
    (a range's ends, every choice) with the values drawn before it, the space's other
    fields at their defaults; else it keeps the base config's value.

    >>> base = TrainConfig(source="moons", target="moons-rotated")
    >>> space = {"method": ("source-only",), "target_entropy": (0.0, 0.1)}
    >>> draw(space, base, lambda name, spec: spec[-1])  # source-only takes no entropy term
    {'method': 'source-only'}
    """
    neutral = {**base.to_dict(), **{n: _FIELDS[n].default for n in space}}
    values: dict[str, Any] = {}
    for name in _order(space):
        spec = space[name]
        if all(_refusal({**neutral, **values, name: v}) is None for v in _representatives(spec)):
            values[name] = suggest(name, spec)
    return values


def check_space(space: Mapping[str, Any], base: TrainConfig) -> dict[str, Spec]:
    """``space`` checked against TrainConfig and ``base``; returns it normalised.

    Refused, naming the entry and the fix: an unknown field, a range of the wrong kind
    or with bad bounds, a method that trains on target labels, a value TrainConfig
    refuses with every method searched, and a base config that a drawn method refuses.

    >>> base = TrainConfig(source="moons", target="moons-rotated")
    >>> check_space({"lr": Range(0.0, 0.1)}, base)
    Traceback (most recent call last):
    ...
    backflip._errors.BackflipValueError: space: TrainConfig refuses lr = 0.0 with the base config (lr must be ...> 0; got 0.0. ...). Narrow the range of 'lr', or change the base config.
    """
    if not isinstance(space, Mapping):
        raise BackflipTypeError(
            f"space must be a mapping of TrainConfig field names to ranges; got "
            f"{type(space).__name__}. E.g. {{**DEFAULT_SPACE, 'lr': Range(1e-3, 1e-2, log=True)}}.")
    if not space:
        raise BackflipValueError("space is empty; pass at least one entry, or space=None for "
                                 "DEFAULT_SPACE.")
    checked = {name: _check_entry(name, spec) for name, spec in space.items()}
    methods = checked.get("method", (base.method,))
    for m in methods:
        if m not in METHODS:
            raise BackflipValueError(
                f"space: unknown method {m!r}; choose among {', '.join(METHODS)}.")
        if needs_target_labels(m):
            raise BackflipValueError(
                f"space: method {m!r} trains on target labels, so a search over it would pick "
                "by target labels; remove it from the space's 'method' choices (train it on "
                "its own as an upper bound).")
    # each value on its own: TrainConfig accepts it with at least one method searched
    neutral = {**base.to_dict(), **{n: _FIELDS[n].default for n in checked}}
    for name, spec in checked.items():
        for value in _representatives(spec):
            errors = [_refusal({**neutral, "method": m, name: value}) for m in methods]
            if all(errors):
                raise BackflipValueError(
                    f"space: TrainConfig refuses {name} = {value!r} with the base config "
                    f"({str(errors[0]).rstrip('.')}). Narrow the range of {name!r}, or change "
                    "the base config.") from None
    # the trials' configs: every method with the low ends and with the high ends
    for m in methods:
        for end in (0, -1):
            values = draw({**checked, "method": (m,)}, base,
                          lambda _n, s, e=end: _representatives(s)[e])
            err = _refusal({**base.to_dict(), **values})
            if err is not None:
                raise BackflipValueError(
                    f"space: a trial with {values} gets a config TrainConfig refuses "
                    f"({str(err).rstrip('.')}). "
                    "Change the base config, or add the field it names to the space.") from None
    return checked


def _convert(name: str, text: str) -> Any:
    # One choice of a CLI spec, in its field's type.
    kind = _field_type(name)
    if text.lower() == "none" and _FIELDS[name].default is None:
        return None
    try:
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        return kind(text)
    except ValueError:
        raise BackflipValueError(
            f"--space: {name}={text!r} is not {_a(kind)}.") from None


def parse_space(spec: str) -> dict[str, Spec]:
    """A space from the CLI's ``--space`` string (checked later, by :func:`check_space`).

    Entries are ``NAME=A|B|C`` (choices) or ``NAME=LOW:HIGH[:int][:log]`` (a range; an
    int field gives an IntRange), separated by commas; names may use ``-`` for ``_``.
    ``default`` as an entry brings :data:`DEFAULT_SPACE`, which later entries change.

    >>> parse_space("default,lr=1e-3:1e-2:log")["lr"]
    Range(low=0.001, high=0.01, log=True)
    >>> parse_space("hidden=32:256:int:log,target-entropy=0|0.1")
    {'hidden': IntRange(low=32, high=256, log=True), 'target_entropy': (0.0, 0.1)}
    >>> parse_space("lr")
    Traceback (most recent call last):
    ...
    backflip._errors.BackflipValueError: --space: entry 'lr' is not NAME=VALUES; write e.g. lr=1e-4:1e-1:log or method=dann|mdd, comma-separated.
    """
    space: dict[str, Spec] = {}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        if entry == "default":
            space.update(DEFAULT_SPACE)
            continue
        name, eq, values = entry.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not name or not values:
            raise BackflipValueError(
                f"--space: entry {entry!r} is not NAME=VALUES; write e.g. lr=1e-4:1e-1:log or "
                "method=dann|mdd, comma-separated.")
        if name not in _FIELDS:
            _check_entry(name, ())  # the unknown-field message
        if ":" in values:
            parts = values.split(":")
            flags = {p.lower() for p in parts[2:]}
            if len(parts) < 2 or not flags <= {"int", "log"}:
                raise BackflipValueError(
                    f"--space: {entry!r}: a range is LOW:HIGH, then :int and/or :log; got "
                    f"{values!r}.")
            is_int = "int" in flags or _field_type(name) is int
            try:
                low, high = (int(p) if is_int else float(p) for p in parts[:2])
            except ValueError:
                raise BackflipValueError(
                    f"--space: {entry!r}: the bounds {parts[0]!r} and {parts[1]!r} must be "
                    f"{'ints' if is_int else 'numbers'}.") from None
            space[name] = (IntRange if is_int else Range)(low, high, log="log" in flags)
        else:
            space[name] = tuple(_convert(name, v.strip()) for v in values.split("|"))
    return space


def space_to_json(space: Mapping[str, Spec]) -> dict[str, Any]:
    """A JSON-ready form of a space (tune.json).

    >>> space_to_json({"lr": Range(0.001, 0.1, log=True), "method": ("dann",)})
    {'lr': {'range': 'float', 'low': 0.001, 'high': 0.1, 'log': True}, 'method': ['dann']}
    """
    out: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, Range | IntRange):
            out[name] = {"range": "int" if isinstance(spec, IntRange) else "float",
                         "low": spec.low, "high": spec.high, "log": spec.log}
        else:
            out[name] = list(spec)
    return out
