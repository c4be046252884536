"""Run and section context, kept in :mod:`contextvars`.

Each thread and each asyncio task sees its own chain of frames, so two tasks
running in two sections (``asyncio.gather``) never mix their events.

A *frame* is immutable once created: the exporter thread may read it later
(to fill ``run_id``, ``section_path`` …) while the host keeps running.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from . import _state

__all__ = ["Frame", "RunBudget", "section", "trace", "run", "current_frame", "MAX_SECTION_DEPTH"]

#: Sections nest at most this deep: a ``section()`` inside the 64th level adds
#: no level (what runs in it is recorded in the 64th-level section), said once.
MAX_SECTION_DEPTH = 64

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- ids
# Span ids: a random per-process prefix plus a counter: unique, and about 100x
# cheaper than uuid4 on the hot path. The prefix is renewed in a forked child.
_id_prefix = os.urandom(6).hex()
_id_counter = itertools.count(1)


# Run and event ids: 32 hex chars, a random 80-bit per-process prefix and a
# 48-bit counter (uuid4-sized, unique across processes, no syscall per id).
_long_prefix = os.urandom(10).hex()
_long_counter = itertools.count(1)


def new_span_id() -> str:
    return f"{_id_prefix}{next(_id_counter):x}"


def new_run_id() -> str:
    return f"{_long_prefix}{next(_long_counter):012x}"


new_event_id = new_run_id


def _reseed_after_fork() -> None:
    global _id_prefix, _id_counter, _long_prefix, _long_counter
    _id_prefix = os.urandom(6).hex()
    _id_counter = itertools.count(1)
    _long_prefix = os.urandom(10).hex()
    _long_counter = itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_after_fork)


# ------------------------------------------------------------------------ frames
class Frame:
    """One open run or section."""

    __slots__ = ("run_id", "span_id", "label", "path", "parent", "sampled", "attrs", "depth", "budget")

    def __init__(
        self,
        run_id: str,
        span_id: str | None,
        label: str | None,
        path: str | None,
        parent: Frame | None,
        sampled: bool,
        attrs: dict[str, Any] | None,
        depth: int = 0,
        budget: RunBudget | None = None,
    ) -> None:
        self.run_id = run_id
        self.span_id = span_id  # None for a bare run() frame
        self.label = label
        self.path = path
        self.parent = parent
        self.sampled = sampled
        self.attrs = attrs  # run attributes, inherited by every event of the run
        self.depth = depth  # sections in path (0: a bare run() frame)
        # the innermost capped run's spend (run(max_cost_usd=...)), inherited by
        # its sections and by runs opened inside it; None: no cap applies
        self.budget = budget

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Frame(run={self.run_id!r}, span={self.span_id!r}, path={self.path!r})"


class RunBudget:
    """A capped run's spend as the SDK counts it (``run(max_cost_usd=...)``):
    ``spent`` grows as the run's calls finish (``_guard.account``);
    ``pending`` holds usages whose price is not fetched yet; ``parent``: the
    enclosing capped run, whose spend grows too (a nested run cannot escape
    the cap of the run it is opened in)."""

    __slots__ = ("cap", "spent", "pending", "parent", "run_id")

    def __init__(self, cap: float, parent: RunBudget | None, run_id: str) -> None:
        self.cap = cap
        self.spent = 0.0
        self.pending: list[Any] = []
        self.parent = parent
        self.run_id = run_id

    def add(self, usd: float) -> None:
        b: RunBudget | None = self
        while b is not None:
            b.spent += usd
            b = b.parent


_current: contextvars.ContextVar[Frame | None] = contextvars.ContextVar("llmobserve_frame", default=None)
current_frame = _current.get


_said_too_deep = False


def _too_deep(label: str, parent: Frame) -> None:
    global _said_too_deep
    if not _said_too_deep:
        _said_too_deep = True
        _state.notice(
            f"llmobserve: section {label!r} is nested deeper than {MAX_SECTION_DEPTH} levels, the maximum: "
            f"it adds no level, and what runs in it is recorded in the {MAX_SECTION_DEPTH}th-level section "
            f"{parent.label!r}"
        )


def _decide_sampled() -> bool:
    rate = _state.sample_rate
    return rate >= 1.0 or random.random() < rate


# ----------------------------------------------------------------------- section
class section:
    """``with section("agent:researcher"): ...`` (also ``async with``, and usable
    as a decorator). Nests; the outermost section of no open run starts a run.
    On close it emits a ``section`` span with its latency and status; an
    exception leaving the block marks it ``error`` and propagates unchanged."""

    __slots__ = ("label", "_frame", "_token", "_t0", "_wall")

    def __init__(self, label: str) -> None:
        self.label = str(label)
        self._frame: Frame | None = None
        self._token: contextvars.Token | None = None
        self._t0 = 0.0
        self._wall = 0.0

    # -- context manager -------------------------------------------------------
    def __enter__(self) -> section:
        try:
            parent = _current.get()
            label = self.label
            if parent is None:
                frame = Frame(new_run_id(), new_span_id(), label, label, None, _decide_sampled(), None, 1)
            elif (depth := parent.depth) < MAX_SECTION_DEPTH:
                path = label if parent.path is None else parent.path + "/" + label
                frame = Frame(
                    parent.run_id,
                    new_span_id(),
                    label,
                    path,
                    parent,
                    parent.sampled,
                    parent.attrs,
                    depth + 1,
                    parent.budget,
                )
            else:  # too deep: no level of its own, no section event; its calls go to the parent
                _too_deep(label, parent)
                frame = None
            self._frame = frame
            self._token = None if frame is None else _current.set(frame)
        except Exception:  # pragma: no cover - defensive
            self._frame = None
        self._wall = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        latency = time.perf_counter() - self._t0
        frame = self._frame
        token = self._token
        self._frame = None
        self._token = None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:
                # exited in another context (e.g. a generator resumed elsewhere)
                if frame is not None:
                    _current.set(frame.parent)
        if frame is not None and frame.sampled and _state.active:
            _state.emit_section(frame, self._wall, latency, None if exc_type is None else exc_type.__name__)
        return None

    async def __aenter__(self) -> section:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        return self.__exit__(exc_type, exc, tb)

    # -- decorator -------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        return _decorate(fn, self.label)


def _decorate(fn: F, label: str) -> F:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            with section(label):
                return await fn(*args, **kwargs)

        return awrapper  # type: ignore[return-value]

    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agwrapper(*args: Any, **kwargs: Any) -> Any:
            with section(label):
                async for item in fn(*args, **kwargs):
                    yield item

        return agwrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gwrapper(*args: Any, **kwargs: Any) -> Any:
            with section(label):
                return (yield from fn(*args, **kwargs))

        return gwrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with section(label):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def trace(
    fn: Callable[..., Any] | None = None,
    *,
    agent: str | None = None,
    tool: str | None = None,
    step: str | None = None,
    name: str | None = None,
) -> Any:
    """Decorator: ``@trace(agent="researcher")`` runs the function inside the
    section ``agent:researcher``; ``tool=`` → ``tool:…``, ``step=`` → ``step:…``,
    ``name=`` → the name as given. Bare ``@trace`` uses the function's name.
    Works on sync and async functions and (async) generators."""

    def label_for(f: Callable[..., Any]) -> str:
        if agent is not None:
            return f"agent:{agent}"
        if tool is not None:
            return f"tool:{tool}"
        if step is not None:
            return f"step:{step}"
        if name is not None:
            return str(name)
        return str(getattr(f, "__qualname__", None) or getattr(f, "__name__", "function"))

    if fn is not None and callable(fn):
        return _decorate(fn, label_for(fn))

    def deco(f: F) -> F:
        return _decorate(f, label_for(f))

    return deco


# --------------------------------------------------------------------------- run
class run:
    """``with run(run_id=None, *, max_cost_usd=None, **attributes):`` an explicit run boundary.

    Everything inside (sections and calls) shares one ``run_id``; the
    attributes (``user_id=…``, tags) are copied onto every event of the run.
    Inside an already open run it starts a new one (a fresh boundary).

    ``max_cost_usd`` (a keyword, never an attribute): the run's cap. The SDK
    counts the run's cost as its calls finish (their usage priced with rates
    fetched from the collector); a call that would start with the run's
    spend already at or past the cap raises ``llmobserve.BudgetExceeded``
    before its request is sent. Nested runs: the cost of a run opened inside
    a capped run counts towards that run's cap too, and a call is refused
    when any enclosing cap is reached (a nested run cannot escape its
    parent's cap; its own cap can only be tighter). A capped run is always
    recorded (never sampled out: its calls' usage is what is counted).
    """

    __slots__ = ("run_id", "attributes", "max_cost_usd", "_token", "_budget")

    def __init__(self, run_id: str | None = None, *, max_cost_usd: float | None = None, **attributes: Any) -> None:
        self.run_id = str(run_id)[:128] if run_id is not None else new_run_id()
        self.attributes = attributes or None
        if max_cost_usd is not None:
            # a cap that silently did nothing would be worse than an error here
            if isinstance(max_cost_usd, bool) or not isinstance(max_cost_usd, int | float):
                raise TypeError(f"max_cost_usd must be a number of USD, not {type(max_cost_usd).__name__}")
            max_cost_usd = float(max_cost_usd)
            if not max_cost_usd >= 0.0:  # NaN too
                raise ValueError(f"max_cost_usd must be >= 0, not {max_cost_usd!r}")
        self.max_cost_usd = max_cost_usd
        self._token: contextvars.Token | None = None
        self._budget: RunBudget | None = None

    @property
    def spent_usd(self) -> float | None:
        """The run's cost so far as the SDK counted it (capped runs; None otherwise)."""
        b = self._budget
        if b is None:
            return None
        if b.pending:  # usages whose price has arrived since: counted now
            from ._guard import settle

            settle(b)
        return b.spent

    def __enter__(self) -> run:
        cap = self.max_cost_usd
        budget = None
        if cap is not None or _state.guarding:
            outer = _current.get()
            budget = outer.budget if outer is not None else None
            if cap is not None:
                budget = RunBudget(cap, budget, self.run_id)
                self._budget = budget
                _state.guarding = True
        sampled = True if budget is not None else _decide_sampled()
        frame = Frame(self.run_id, None, None, None, None, sampled, self.attributes, 0, budget)
        self._token = _current.set(frame)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        token = self._token
        self._token = None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:
                _current.set(None)
        return None

    async def __aenter__(self) -> run:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        return self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: F) -> F:
        # as a decorator every call is a run of its own (fresh run_id, its own cap)
        attrs = self.attributes or {}
        cap = self.max_cost_usd

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                with run(None, max_cost_usd=cap, **attrs):
                    return await fn(*args, **kwargs)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with run(None, max_cost_usd=cap, **attrs):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def sampled_out(frame: Frame | None) -> bool:
    """True when an instrumented call in ``frame`` must not be recorded: its
    run was sampled out, or (outside any run) this call, a run of its own, is."""
    if frame is None:
        return not _decide_sampled()
    return not frame.sampled
