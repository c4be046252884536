"""The budget guard (opt-in, off by default): ``run(max_cost_usd=…)`` and
``observe(enforce_budgets=True)``.

Split between the two threads the SDK has:

* the **calling thread** (the wrapped call) only reads what is already
  there: :func:`check` compares a run's spend with its cap (a float compare)
  and looks the call up in the exceeded budgets the exporter compiled (a
  dict look-up; ``None`` when nothing is exceeded, the usual case). At the
  end of a call in a capped run, :func:`account` prices its usage with the
  cached rates (dict look-ups and a few multiplications).
* the **exporter thread** fetches rates (``GET /pricing/resolve``, cached per
  (provider, model), refreshed in the background) and polls
  ``GET /budgets/status``, then swaps in the compiled result (one reference
  assignment, atomic under the GIL). The calling thread never waits for it:
  a price not fetched yet leaves the usage *pending* (priced at the next
  check once the rate is there); a price the collector does not have, or
  cannot give (down, slow, an error), counts $0 and is said once.

Nothing here raises into the host but :class:`BudgetExceeded`, and only
where the user opted in (a capped run, ``enforce_budgets=True``).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any, NamedTuple

from . import _state
from ._events import (
    P_NONE,
    P_OPENAI_RAW,
    P_OPENAI_STREAM,
    P_PINECONE,
    P_TOKENS,
    model_of,
    openai_raw,
    openai_stream,
    openai_usage,
    pinecone_event,
)
from .context import Frame, RunBudget

__all__ = ["BudgetExceeded", "Rates", "BudgetState", "check", "account", "rates_parse", "cost_usd", "status_compile"]

logger = logging.getLogger("llmobserve")

_monotonic = time.monotonic
_MISSING = object()

#: the pricing engine's unit nesting (pricing/costing.py on the server): a child
#: unit the card prices is taken out of its parent; one it does not price either
#: stays in its parent (INHERITS) or is unpriced (audio, never guessed)
PARENT = {
    "cached_input_tokens": "input_tokens",
    "cache_write_tokens": "input_tokens",
    "input_audio_tokens": "input_tokens",
    "reasoning_tokens": "output_tokens",
    "output_audio_tokens": "output_tokens",
}
INHERITS = frozenset({"cached_input_tokens", "cache_write_tokens", "reasoning_tokens"})
_COUNT_UNITS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")
#: a run's usages waiting for a price at most (beyond: the oldest counts $0)
MAX_PENDING = 10_000

REASON_RUN = "run_cap"
REASON_BUDGET = "budget"
REASON_UNKNOWN = "status_unknown"


class BudgetExceeded(Exception):
    """Raised by an instrumented call, **before** its request is sent, when the
    run it belongs to reached its ``max_cost_usd`` or a ``hard`` budget on the
    collector covering it is exceeded (``observe(enforce_budgets=True)``), or,
    with ``fail_closed=True``, while the budgets' status is unknown or stale.

    ``reason``: ``"run_cap"``, ``"budget"`` or ``"status_unknown"``;
    ``limit_usd``: the run's cap or the budget's amount (None when unknown);
    ``spent_usd``: the run's spend as the SDK counted it, or the budget's as
    the collector reported it (None when unknown); ``scope``: ``{"run_id": …}``
    for a run cap, the budget's scope (section, model, service, attribute)
    for a budget; ``budget``: the budget's id, name, period and mode (None for
    a run cap)."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = REASON_RUN,
        limit_usd: float | None = None,
        spent_usd: float | None = None,
        scope: dict[str, Any] | None = None,
        budget: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.scope = scope or {}
        self.budget = budget

    @property
    def cap_usd(self) -> float | None:
        """The run's ``max_cost_usd`` (alias of ``limit_usd``)."""
        return self.limit_usd

    def __reduce__(self) -> Any:  # picklable (keyword-only fields), e.g. across a process pool
        fields = {
            "reason": self.reason,
            "limit_usd": self.limit_usd,
            "spent_usd": self.spent_usd,
            "scope": self.scope,
            "budget": self.budget,
        }
        return (_rebuild, (str(self), fields))


def _rebuild(message: str, fields: dict[str, Any]) -> BudgetExceeded:
    return BudgetExceeded(message, **fields)


# ---------------------------------------------------------------------- rates
class Rates(NamedTuple):
    """What ``GET /pricing/resolve`` answered for one (provider, model)."""

    units: dict[str, tuple[float, tuple[tuple[int, float], ...]]]  # unit -> (USD per unit, long-context tiers)
    per_call: float
    discount: float  # 0..1
    matched: str
    # (input, cached input or None, output, reasoning or None) USD per token
    # when none of them has long-context tiers: a call with only these units
    # is priced by a few multiplications (cost_tokens), no dict built
    tokens: tuple[float, float | None, float, float | None] | None = None


def rates_parse(obj: Any) -> Rates | None:
    """The rates of a ``/pricing/resolve`` answer (its ``matched`` object), or
    None when nothing matched. Raises ValueError on a shape it cannot read."""
    if not isinstance(obj, dict) or "matched" not in obj:
        raise ValueError("not a /pricing/resolve answer")
    m = obj["matched"]
    if m is None:
        return None
    if not isinstance(m, dict) or not isinstance(m.get("rates"), dict):
        raise ValueError("matched without rates")
    units: dict[str, tuple[float, tuple[tuple[int, float], ...]]] = {}
    per_call = 0.0
    for unit, entry in m["rates"].items():
        if not isinstance(entry, dict):
            continue
        if "usd_per_call" in entry:
            per_call = _finite(entry["usd_per_call"])
            continue
        per = _finite(entry.get("usd_per_1m")) / 1e6
        tiers = tuple(
            (int(t["above_input_tokens"]), _finite(t["usd_per_1m"]) / 1e6)
            for t in entry.get("tiers") or ()
            if isinstance(t, dict)
        )
        units[str(unit)] = (per, tuple(sorted(tiers)))
    discount = min(1.0, max(0.0, _finite(m.get("discount_percent") or 0.0) / 100.0))
    tokens = None
    if not any(units[u][1] for u in _COUNT_UNITS if u in units):

        def rate_of(unit: str) -> float | None:
            rate = units.get(unit)
            return None if rate is None else rate[0]

        tokens = (
            rate_of("input_tokens") or 0.0,
            rate_of("cached_input_tokens"),
            rate_of("output_tokens") or 0.0,
            rate_of("reasoning_tokens"),
        )
    return Rates(units, per_call, discount, str(m.get("model") or ""), tokens)


def _finite(v: Any) -> float:
    f = float(v)
    if not math.isfinite(f) or f < 0:
        raise ValueError(f"not a price: {v!r}")
    return f


def cost_usd(rates: Rates, units: dict[str, float]) -> float:
    """``units`` priced with ``rates``, as the collector's pricing engine does
    (pricing/costing.apply_card): child units taken out of their parents when
    priced on their own, long-context tiers by input tokens, the per-call
    price, the project's discount. A unit without a rate counts $0."""
    rs = rates.units
    leaves = dict(units)
    for unit, value in units.items():
        parent = PARENT.get(unit)
        if parent is None:
            continue
        if unit in rs or unit not in INHERITS:
            leaves[parent] = max(0.0, leaves.get(parent, 0) - value)
        else:
            del leaves[unit]  # billed inside its parent
    input_tokens = units.get("input_tokens", 0)
    total = 0.0
    for unit, value in leaves.items():
        rate = rs.get(unit)
        if rate is None:
            continue
        per, tiers = rate
        for start, r in reversed(tiers):
            if input_tokens > start:
                per = r
                break
        total += value * per
    total += rates.per_call
    if rates.discount:
        total -= total * rates.discount
    return total


def cost_tokens(t: tuple[float, float | None, float, float | None], u: tuple) -> float:
    """:func:`cost_usd` for a call with only the four token counts (``u``:
    input, output, cached input, reasoning) and rates without tiers
    (``Rates.tokens``), by the same rules, without building a dict."""
    inp, out, cached, reasoning = u[0], u[1], u[2], u[3]
    rate_in, rate_cached, rate_out, rate_reasoning = t
    usd = 0.0
    if cached and rate_cached is not None:  # priced on its own: out of input
        usd += cached * rate_cached
        inp = max(0, inp - cached)
    if reasoning and rate_reasoning is not None:
        usd += reasoning * rate_reasoning
        out = max(0, out - reasoning)
    return usd + inp * rate_in + out * rate_out


def usage_usd(rates: Rates, u: tuple) -> float:
    """USD of a usage ``u`` = (input, output, cached input, reasoning,
    other units or None)."""
    t = rates.tokens
    if t is not None and not u[4]:
        usd = cost_tokens(t, u) + rates.per_call
        return usd - usd * rates.discount if rates.discount else usd
    units: dict[str, float] = {}
    for unit, v in zip(_COUNT_UNITS, u[:4], strict=False):
        if v:
            units[unit] = v
    if u[4]:
        units.update((k, v) for k, v in u[4].items() if v)
    return cost_usd(rates, units)


def _usage(u: tuple | None) -> tuple | None:
    """An ``openai_usage`` tuple as a usage (None: unknown or nothing used)."""
    if u is None or not (u[0] or u[1] or u[4]):
        return None
    return u[:5]


_decoder = json.JSONDecoder()


def _stream_usage(payload: tuple, model: Any) -> tuple[Any, tuple | None]:
    """(model, usage) of a finished chat/completions stream whose usage chunk
    was kept as bytes: only its ``usage`` object is decoded (the exporter
    decodes the whole chunk later, off this thread); the model from the
    start of the body. Else (parsed chunks, Responses) as the exporter does."""
    usage, head = payload[0], payload[1]
    if type(usage) is bytes:
        i = usage.find(b'"usage":')
        if i >= 0:
            text = usage[i + 8 :].decode("utf-8", "replace")
            try:
                obj = _decoder.raw_decode(text, len(text) - len(text.lstrip()))[0]
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                if head is not None:
                    model = model_of(head) or model
                return model, _usage(openai_usage(obj))
    model, u, _ = openai_stream(payload, model, {})
    return model, _usage(u)


def call_units(model: Any, pkind: int, payload: Any) -> tuple[Any, tuple | None]:
    """(the model that served it, its usage or None) of a recorded call, read
    from the payload the exporter will read again. A usage: (input, output,
    cached input, reasoning, other units or None)."""
    if pkind == P_TOKENS:
        return model, _usage(payload)
    if pkind == P_OPENAI_STREAM:
        return _stream_usage(payload, model)
    if pkind == P_OPENAI_RAW:
        model, u, _ = openai_raw(payload, model)
        return model, _usage(u)
    if pkind == P_PINECONE:
        model, ru, wu, fields = pinecone_event(payload, model, {})
        units: dict[str, float] = {}
        if ru:
            units["read_units"] = ru
        if wu:
            units["write_units"] = wu
        details = (fields or {}).get("usage_details")
        if details:
            units.update((k, v) for k, v in details.items() if v)
        return model, (0, 0, 0, 0, units) if units else None
    return model, None


def _key(provider: Any, model: Any) -> tuple[str, str] | None:
    """The price cache key: (provider, model); a Pinecone index call (no
    model) is priced by the provider-wide row (model ``*``)."""
    if type(provider) is tuple:
        provider = provider[0]
    if not isinstance(provider, str):
        return None
    if model is None:
        return (provider, "*") if provider == "pinecone" else None
    return provider, model if isinstance(model, str) else str(model)


# -------------------------------------------------------------- run accounting
# a run's calls may finish on several threads; reentrant, because a stream
# garbage-collected while this thread holds it records itself (and counts) here
_lock = threading.RLock()
_said_unpriced: set[tuple[str, str]] = set()


def _want(key: tuple[str, str]) -> None:
    exp = _state.exporter
    if exp is not None:
        exp.want_price(key)


def _price(key: tuple[str, str] | None, req_key: tuple[str, str] | None, usage: tuple) -> tuple[float | None, bool]:
    """(USD of ``units``, final). At ``key``'s rates (the model the response
    names): final. While those are not fetched yet, at the requested model's
    (a dated snapshot answered for an alias: nearly always the same price),
    not final — corrected once ``key``'s arrive; (None, False) while neither
    is there. A price the collector does not have, or could not give, counts
    0.0 (final), said once."""
    prices = _state.prices
    r = prices.get(key, _MISSING) if key is not None else None
    if r is _MISSING:
        _want(key)  # type: ignore[arg-type]
    if type(r) is Rates:
        return usage_usd(r, usage), True
    r2 = prices.get(req_key, _MISSING) if req_key is not None and req_key != key else None
    if type(r2) is Rates:
        return usage_usd(r2, usage), r is not _MISSING
    if r is _MISSING:
        return None, False
    if key is not None and key not in _said_unpriced:
        _said_unpriced.add(key)
        _state.notice(
            f"llmobserve: no price for {key[0]}/{key[1]} from the collector: its calls count $0 towards "
            "run(max_cost_usd=...) caps (fail-open)"
        )
    elif key is None:
        logger.debug("llmobserve: a call without a model counts $0 towards run caps")
    return 0.0, True


def account(budget: RunBudget, provider: Any, model: Any, req_model: Any, pkind: int, payload: Any) -> None:
    """Add a finished call's cost to its run's spend (and every enclosing
    capped run's). Called by ``_state.emit_call`` for calls of capped runs
    only. Never raises."""
    if pkind == P_NONE:
        return  # a failed call: nothing billed
    try:
        model, usage = call_units(model, pkind, payload)
        if usage is None:
            return
        key = _key(provider, model)
        req_key = _key(provider, req_model) if req_model is not None and req_model != model else None
        with _lock:
            usd, final = _price(key, req_key, usage)
            if usd is not None:
                budget.add(usd)
            if not final:
                pending = budget.pending
                if len(pending) >= MAX_PENDING:
                    pending.pop(0)
                pending.append((key, req_key, usage, usd or 0.0))
    except Exception:
        logger.debug("llmobserve: could not count a call towards its run's cap", exc_info=True)


def settle(budget: RunBudget) -> None:
    """Price (or correct) the run's pending usages whose rates have arrived since."""
    with _lock:
        items = budget.pending[:]
        del budget.pending[: len(items)]  # (what is added meanwhile stays)
        left = []
        for key, req_key, usage, counted in items:
            usd, final = _price(key, req_key, usage)
            if usd is not None and usd != counted:
                budget.add(usd - counted)
                counted = usd
            if not final:
                left.append((key, req_key, usage, counted))
        if left:
            budget.pending[:0] = left


# ------------------------------------------------------------ server budgets
class _Rule(NamedTuple):
    """One exceeded hard budget whose service matches this process."""

    section: str | None
    model: str | None
    attr_key: str | None
    attr_value: str | None
    limit_usd: float | None
    spent_usd: float | None
    scope: dict[str, Any]
    budget: dict[str, Any]


class _Blocked(NamedTuple):
    by_model: dict[str, tuple[_Rule, ...]]  # rules naming a model
    any_model: tuple[_Rule, ...]  # rules naming none


class BudgetState:
    """What the exporter thread last learnt from ``GET /budgets/status``,
    read by :func:`check`. ``blocked``: None when no hard budget covering
    this service is exceeded (the usual case: the hot path reads one
    attribute); ``fresh_until``: the monotonic time after which the status
    is stale (three poll intervals after the last good poll; 0: never)."""

    __slots__ = ("fail_closed", "interval", "blocked", "fresh_until", "polled_at", "budgets")

    def __init__(self, interval: float, fail_closed: bool) -> None:
        self.interval = interval
        self.fail_closed = fail_closed
        self.blocked: _Blocked | None = None
        self.fresh_until = 0.0
        self.polled_at: float | None = None
        self.budgets = 0  # budgets in the last good answer

    def stale(self) -> bool:
        return _monotonic() > self.fresh_until


def _text(v: Any) -> str | None:
    """A run attribute as the text a budget's attribute value is compared
    with, as the collector compares them (budgets/spend.py): a string as it
    is, a number or boolean as its JSON text (7, 1.5, true); anything else
    (None, objects, lists) never matches."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool | int | float):
        try:
            return json.dumps(v, allow_nan=False)
        except ValueError:
            return None
    return None


def status_compile(obj: Any, service: str | None) -> tuple[_Blocked | None, int]:
    """(the exceeded hard budgets covering ``service``, compiled for the hot
    path, or None; how many budgets the answer listed). Raises ValueError on
    an answer that is not the documented shape."""
    if not isinstance(obj, dict) or not isinstance(obj.get("budgets"), list):
        raise ValueError("not a /budgets/status answer")
    by_model: dict[str, list[_Rule]] = {}
    any_model: list[_Rule] = []
    for b in obj["budgets"]:
        if not isinstance(b, dict):
            continue
        hard = b.get("mode") == "hard" or b.get("hard") is True
        if not hard or b.get("state") != "exceeded":
            continue
        scope = b.get("scope")
        scope = scope if isinstance(scope, dict) else {}
        svc = scope.get("service")
        if svc is not None and svc != service:
            continue
        attr = scope.get("attribute")
        akey = avalue = None
        if isinstance(attr, dict) and attr.get("key") is not None:
            akey, avalue = str(attr["key"]), _text(attr.get("value"))
        section = scope.get("section")
        model = scope.get("model")
        rule = _Rule(
            None if section is None else str(section),
            None if model is None else str(model),
            akey,
            avalue,
            _num(b.get("amount_usd")),
            _num(b.get("spent_usd")),
            scope,
            {k: b.get(k) for k in ("id", "name", "mode", "period", "period_start", "period_end")},
        )
        if rule.model is None:
            any_model.append(rule)
        else:
            by_model.setdefault(rule.model, []).append(rule)
    n = len(obj["budgets"])
    if not by_model and not any_model:
        return None, n
    return _Blocked({m: tuple(rs) for m, rs in by_model.items()}, tuple(any_model)), n


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _covers(rule: _Rule, frame: Frame | None) -> bool:
    """Whether ``rule``'s section and attribute (its model and service were
    matched already) cover a call in ``frame``."""
    if rule.section is not None:
        s = rule.section
        f = frame
        while f is not None and f.label != s:  # the call's section or any enclosing one
            f = f.parent
        if f is None:
            return False
    if rule.attr_key is not None:
        attrs = frame.attrs if frame is not None else None
        if not attrs or rule.attr_key not in attrs:
            return False
        text = _text(attrs[rule.attr_key])
        if text is None or text != rule.attr_value:
            return False
    return True


def _blocked_by(blocked: _Blocked, frame: Frame | None, model: Any) -> _Rule | None:
    if model is not None:
        for rule in blocked.by_model.get(model if isinstance(model, str) else str(model), ()):
            if _covers(rule, frame):
                return rule
    for rule in blocked.any_model:
        if _covers(rule, frame):
            return rule
    return None


# ------------------------------------------------------------------- the check
def _refuse(frame: Frame | None, span: str, name: str, who: Any, model: Any, exc: BudgetExceeded) -> BudgetExceeded:
    """Record the refusal (status error, error_type BudgetExceeded, no
    tokens) so the dashboard shows it; returns ``exc`` to raise."""
    try:
        attrs: dict[str, Any] = {"budget_refused": exc.reason}
        if exc.limit_usd is not None:
            attrs["budget_limit_usd"] = exc.limit_usd
        if exc.spent_usd is not None:
            attrs["budget_spent_usd"] = round(exc.spent_usd, 9)
        if exc.budget is not None:
            attrs["budget_id"] = exc.budget.get("id")
            attrs["budget_name"] = exc.budget.get("name")
        exp = _state.exporter
        if exp is not None:
            exp.refused += 1
        _state.emit_call(frame, span, name, who, model, time.time(), 0.0, "BudgetExceeded", P_NONE, None, attrs)
    except Exception:  # pragma: no cover - recording must never hide the refusal
        logger.debug("llmobserve: could not record a refusal", exc_info=True)
    return exc


def check(frame: Frame | None, span: str, name: str, who: Any, model: Any) -> None:
    """Called by the wrappers before a call starts, while a guard is on
    (``_state.guarding``). Raises :class:`BudgetExceeded` (after recording
    the refusal) when the call must not be sent; else returns at once."""
    if frame is not None:
        b = frame.budget
        if b is not None:
            if b.pending:
                settle(b)
            if type(model) is str:
                k = (who[0] if type(who) is tuple else who, model)
                if k not in _state.prices:
                    _want(k)  # fetched now, in the background: ready by the time this call ends
            x: RunBudget | None = b
            while x is not None:
                if x.spent >= x.cap:
                    raise _refuse(
                        frame,
                        span,
                        name,
                        who,
                        model,
                        BudgetExceeded(
                            f"llmobserve: run {x.run_id} reached its max_cost_usd of ${x.cap:g} "
                            f"(${x.spent:.6f} spent): {name} refused before it was sent",
                            reason=REASON_RUN,
                            limit_usd=x.cap,
                            spent_usd=x.spent,
                            scope={"run_id": x.run_id},
                        ),
                    )
                x = x.parent
    g = _state.budgets
    if g is not None:
        blocked = g.blocked
        # a stale answer is forgotten when failing open (fail_closed refuses below anyway)
        if blocked is not None and (g.fail_closed or not g.stale()):
            rule = _blocked_by(blocked, frame, model)
            if rule is not None:
                raise _refuse(
                    frame,
                    span,
                    name,
                    who,
                    model,
                    BudgetExceeded(
                        f"llmobserve: budget {rule.budget.get('name')!r} is exceeded "
                        f"(${rule.spent_usd} of ${rule.limit_usd}, hard): {name} refused before it was sent",
                        reason=REASON_BUDGET,
                        limit_usd=rule.limit_usd,
                        spent_usd=rule.spent_usd,
                        scope=rule.scope,
                        budget=rule.budget,
                    ),
                )
        if g.fail_closed and g.stale():
            raise _refuse(
                frame,
                span,
                name,
                who,
                model,
                BudgetExceeded(
                    "llmobserve: the budgets' status is unknown or stale and fail_closed=True: "
                    f"{name} refused before it was sent",
                    reason=REASON_UNKNOWN,
                ),
            )


# the hook _state.emit_call calls for calls of capped runs
_state.account = account
