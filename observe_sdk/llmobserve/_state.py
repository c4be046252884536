"""Process-wide SDK state shared by the context, the instrumentations and the
exporter. Kept in one tiny module so the hot path reads plain module globals."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from ._guard import BudgetState
    from .context import Frame
    from .exporter import Exporter

#: True between observe() and shutdown()/uninstrument(): wrappers record events.
active: bool = False
#: Fraction of runs recorded (decided once per run).
sample_rate: float = 1.0
#: The instrumented application's name (``service`` on every event).
service: str | None = None
#: The background exporter, or None.
exporter: Exporter | None = None

#: Set at interpreter exit once the last flush is over: nothing more is said.
quiet: bool = False

# The budget guard (_guard.py), opt-in. ``guarding`` stays False until a
# capped run is entered or observe(enforce_budgets=True): until then a wrapped
# call reads this one flag and nothing else of the guard.
guarding: bool = False
#: observe(enforce_budgets=True): what the exporter last learnt from /budgets/status
budgets: BudgetState | None = None
#: (provider, model) -> _guard.Rates, or None (no price / could not fetch it:
#: counts $0); filled by the exporter thread only
prices: dict[tuple[str, str], Any] = {}
#: _guard.account, set when the guard module is imported
account: Callable[..., None] | None = None

_logger = logging.getLogger("llmobserve")


def notice(message: str, exc_info: bool = False) -> None:
    """Say something the user has to act on (a missing or rejected API key,
    the collector unreachable and back, a section too deep), once, where it
    is seen: a WARNING of the ``llmobserve`` logger. With logging configured
    it goes wherever the app sends warnings; without (no handler anywhere),
    logging's last resort prints it as one line on stderr, as other SDKs'
    warnings appear. The SDK's logger has no handler of its own for that
    reason; everything else it logs is DEBUG. Never raises."""
    if quiet:
        return
    try:
        _logger.warning(message, exc_info=exc_info)
    except Exception:  # pragma: no cover - a handler's own failure
        pass


# Record kinds (first element of the tuples put on the queue).
KIND_CALL = 0
KIND_SECTION = 1


def emit_section(frame: Frame, wall: float, latency: float, error_type: str | None) -> None:
    exp = exporter
    if exp is not None:
        exp.put((KIND_SECTION, frame, wall, latency, error_type))


def emit_call(
    frame: Frame | None,
    span_type: str,
    name: str,
    provider: str | tuple[str, str | None],
    model: Any,
    wall: float,
    latency: float,
    error_type: str | None,
    payload_kind: int,
    payload: Any,
    attrs: dict | None,
    req_model: Any = None,
) -> None:
    """Queue one instrumented call. Everything costly (ids, timestamps,
    token extraction, JSON, gzip) happens later on the exporter thread.
    ``provider``: a name, or (name, the API host its client talked to) —
    OpenAI calls pass their client's pair, worked out once per client.
    ``req_model``: the model the request named (``model`` may be the
    response's dated snapshot), for a capped run's accounting."""
    if guarding and frame is not None and frame.budget is not None and account is not None:
        account(frame.budget, provider, model, req_model, payload_kind, payload)
    exp = exporter
    if exp is not None:
        exp.put(
            (
                KIND_CALL,
                frame,
                span_type,
                name,
                provider,
                model,
                wall,
                latency,
                error_type,
                payload_kind,
                payload,
                attrs,
            )
        )
