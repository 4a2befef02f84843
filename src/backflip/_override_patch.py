"""Swap a framework's activation functions while ``override_gradients`` blocks run.

Framework-neutral machinery of the Keras and TensorFlow adapters (PyTorch sees every
call through a ``TorchFunctionMode``, which these frameworks lack). Imports no framework.

* A :class:`Watch` names one function (a module attribute, a class's staticmethod or
  method) and says which activation and parameters a call of it means, or that no rule
  covers it. A :class:`Table` groups a framework's watches with its
  ``activation_with_rule``.
* :func:`patched` replaces each watched function by a dispatcher for as long as one
  block needs it (reference counted; the original object is put back afterwards).
* A :class:`Block` is one ``with`` block. It is *entered* only while its model runs:
  the adapter routes the model's entry point through :meth:`Block.run`, which pushes
  it on a per-thread stack. The dispatcher runs the original function untouched
  outside every entered block, in other threads, inside a backward pass (a frame of
  a gradient routine between the call and the model's entry) and while a rule itself
  runs. Inside, it counts the call, raises :func:`strict_error` or applies the rule.

Traced code (``tf.function``, ``jax.jit``) is Python only while it traces: the rule
goes into the traces made while the block is entered, and the counts are per trace.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from backflip._errors import BackflipValueError
from backflip._override_report import OverrideReport, strict_error

__all__ = [
    "MANAGED_TRACES",
    "Block",
    "PassThroughValueError",
    "Table",
    "Watch",
    "add_backward_files",
    "bypassed",
    "owner_of",
    "pass_through",
    "patched",
]

# bind(*args, **kwargs) -> (x, activation or None when not covered, params, label)
Bind = Callable[..., tuple[Any, str | None, dict, str]]


@dataclass(frozen=True)
class Watch:
    """One watched function: ``owner.attr`` (a module, or a class and its attribute)."""

    owner: Any
    attr: str
    bind: Bind

    @property
    def key(self) -> tuple[int, str]:
        return (id(self.owner), self.attr)


@dataclass(frozen=True)
class Table:
    """A framework's watches, its ``activation_with_rule`` and the inputs it handles."""

    watches: tuple[Watch, ...]
    apply: Callable[..., Any]  # activation_with_rule(x, activation, rule, **params)
    accepts: Callable[[Any], bool]  # False: not a call to count (symbolic, integer, ...)


_TLS = threading.local()  # .stack: blocks entered in this thread; .bypass: rules running
_LOCK = threading.Lock()
_PATCHES: dict[tuple[int, str], list] = {}  # key -> [owner, attr, original, count]
_BACKWARD_FILES: set[str] = set()
_OWN_FILE = __file__
#: ids of the compiled functions (tf.function) whose traces a block swaps out and back
MANAGED_TRACES: set[int] = set()


def add_backward_files(*paths: str) -> None:
    """Frames from these source files mark a backward pass (the dispatcher stays out)."""
    _BACKWARD_FILES.update(os.path.abspath(p).removesuffix("c") for p in paths)


def _stack() -> list[Block]:
    stack = getattr(_TLS, "stack", None)
    if stack is None:
        stack = _TLS.stack = []
        _TLS.bypass = 0
    return stack


@contextmanager
def bypassed() -> Iterator[None]:
    """Run framework code (a rule, an uncovered original) without the dispatcher."""
    _stack()
    _TLS.bypass += 1
    try:
        yield
    finally:
        _TLS.bypass -= 1


def _make_dispatcher(watch: Watch, table: Table, original: Callable) -> Callable:
    key = watch.key

    def dispatch(*args: Any, **kwargs: Any) -> Any:
        stack = getattr(_TLS, "stack", None)
        if not stack or _TLS.bypass:
            return original(*args, **kwargs)
        for block in reversed(stack):  # the innermost entered block that watches it
            if key in block.keys:
                return block.handle(watch, table, original, args, kwargs, sys._getframe(1))
        return original(*args, **kwargs)

    for name in ("__module__", "__name__", "__qualname__", "__doc__"):
        # autograph (tf.function) leaves functions of framework modules unconverted
        setattr(dispatch, name, getattr(original, name, None))
    dispatch.__wrapped__ = original  # type: ignore[attr-defined]
    dispatch._backflip_dispatch = True  # type: ignore[attr-defined]
    return dispatch


def _install(watch: Watch, table: Table) -> None:
    entry = _PATCHES.get(watch.key)
    if entry is not None:
        entry[3] += 1
        return
    raw = vars(watch.owner)[watch.attr]
    if isinstance(raw, staticmethod):
        new: Any = staticmethod(_make_dispatcher(watch, table, raw.__func__))
    else:
        new = _make_dispatcher(watch, table, raw)
    _PATCHES[watch.key] = [watch.owner, watch.attr, raw, 1]
    setattr(watch.owner, watch.attr, new)


def _uninstall(watch: Watch) -> None:
    entry = _PATCHES[watch.key]
    entry[3] -= 1
    if entry[3] == 0:
        setattr(entry[0], entry[1], entry[2])
        del _PATCHES[watch.key]


@contextmanager
def patched(tables: tuple[Table, ...]) -> Iterator[None]:
    """Watch the tables' functions while the block runs; put the originals back after."""
    with _LOCK:
        done = []
        try:
            for table in tables:
                for watch in table.watches:
                    _install(watch, table)
                    done.append(watch)
        except BaseException:  # pragma: no cover - only a missing attribute gets here
            for watch in done:
                _uninstall(watch)
            raise
    try:
        yield
    finally:
        with _LOCK:
            for watch in done:
                _uninstall(watch)


class PassThroughValueError(BackflipValueError):
    """A :class:`~backflip.BackflipValueError` that autograph (tf.function) re-raises as it
    is instead of wrapping it in a ``StagingError``; a class attribute, so it survives
    Keras re-creating the error with the layer's call arguments added to the message."""

    ag_pass_through = True


def pass_through(error: BackflipValueError) -> PassThroughValueError:
    """``error`` as a :class:`PassThroughValueError` (the same message)."""
    return PassThroughValueError(*error.args)


def owner_of(frame: FrameType) -> Any:
    """The ``self`` of a method's frame, else None."""
    code = frame.f_code
    if code.co_argcount and code.co_varnames[0] == "self":
        return frame.f_locals.get("self")
    return None


# name_site(label, frames): the report's name for a call; frames run from the call up
# to (not including) the model's entry
NameSite = Callable[[str, list[FrameType]], str]


@dataclass(eq=False)
class Block:
    """One ``override_gradients`` block: its report, rule and the watches it uses."""

    report: OverrideReport
    rule: Any
    strict: bool
    tables: tuple[Table, ...]
    name_site: NameSite
    on_enter: Callable[[], None] | None = None  # called once per forward (outermost entry)
    keys: frozenset = field(init=False)

    def __post_init__(self) -> None:
        self.keys = frozenset(w.key for t in self.tables for w in t.watches)

    def run(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn`` (the model's own entry point) with this block entered."""
        stack = _stack()
        if self not in stack:
            self.report.forwards += 1
            if self.on_enter is not None:
                self.on_enter()
        stack.append(self)
        try:
            return fn(*args, **kwargs)
        finally:
            stack.pop()

    def _frames(self, frame: FrameType | None) -> list[FrameType] | None:
        """Frames from the call up to this block's entry; None inside a backward pass."""
        frames = []
        while frame is not None:
            code = frame.f_code
            if code is _RUN_CODE and frame.f_locals.get("self") is self:
                return frames
            if code.co_filename in _BACKWARD_FILES:
                return None
            if code.co_filename != _OWN_FILE:
                frames.append(frame)
            frame = frame.f_back
        return frames  # pragma: no cover - an entered block always has its run() frame

    def handle(self, watch, table, original, args, kwargs, frame):
        x, activation, params, label = watch.bind(*args, **kwargs)
        if not table.accepts(x):
            return original(*args, **kwargs)
        frames = self._frames(frame)
        if frames is None:
            return original(*args, **kwargs)
        report = self.report
        report.seen += 1
        site = self.name_site(label, frames)
        if activation is None:
            if self.strict:
                raise pass_through(strict_error(report.rule, site, label))
            report.not_overridden.append(site)
            with bypassed():  # its inner calls (Mish's softplus) are part of it
                return original(*args, **kwargs)
        with bypassed():
            out = table.apply(x, activation, self.rule, **params)
        report._record(site, activation, params)
        return out


_RUN_CODE = Block.run.__code__
