"""What a budget or channel may be: one validator for the API and the dashboard's forms."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from budgets.models import DEFAULT_THRESHOLDS, Budget, Channel

MAX_AMOUNT = 1e9
MAX_THRESHOLDS = 10
SCOPE_LIMITS = {"section": 256, "model": 128, "service": 128}
ATTRIBUTE_KEY_MAX = 64
ATTRIBUTE_VALUE_MAX = 200
MAX_RECIPIENTS = 20


class InputError(Exception):
    """Bad input: field -> messages (a 400 in the API, errors beside the form's fields)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(slots=True)
class BudgetInput:
    name: str
    amount_usd: float
    period: str
    section: str | None = None
    model: str | None = None
    service: str | None = None
    attribute_key: str | None = None
    attribute_value: str | None = None
    thresholds: list[int] = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    mode: str = Budget.SOFT
    channel_ids: list[int] = field(default_factory=list)


def _text(value: Any, name: str, limit: int, errors: dict[str, list[str]], *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            errors.setdefault(name, []).append("This field is required.")
        return None
    if not isinstance(value, str):
        errors.setdefault(name, []).append("Must be a string.")
        return None
    value = value.strip()
    if not value:
        if required:
            errors.setdefault(name, []).append("This field is required.")
        return None
    if "\x00" in value:
        errors.setdefault(name, []).append("Must not contain NUL characters.")
        return None
    if len(value) > limit:
        errors.setdefault(name, []).append(f"At most {limit} characters.")
        return None
    return value


def _attribute(value: Any, errors: dict[str, list[str]]) -> tuple[str | None, str | None]:
    """{"key": K, "value": V}, or "K=V"."""
    val: Any
    if value is None or value == "":
        return None, None
    if isinstance(value, str):
        key, sep, val = value.partition("=")
        if not sep:
            errors.setdefault("scope.attribute", []).append('Use KEY=VALUE, e.g. "customer=acme".')
            return None, None
        value = {"key": key.strip(), "value": val}
    if not isinstance(value, dict) or set(value) - {"key", "value"}:
        errors.setdefault("scope.attribute", []).append('An object {"key": …, "value": …} or null.')
        return None, None
    name = _text(value.get("key"), "scope.attribute.key", ATTRIBUTE_KEY_MAX, errors, required=True)
    raw = value.get("value")
    if not isinstance(raw, str):
        errors.setdefault("scope.attribute.value", []).append("A string (compared to the attribute as a string).")
        return name, None
    if "\x00" in raw or len(raw) > ATTRIBUTE_VALUE_MAX:
        errors.setdefault("scope.attribute.value", []).append(
            f"At most {ATTRIBUTE_VALUE_MAX} characters, no NUL characters."
        )
        return name, None
    return name, raw


def _amount(value: Any, errors: dict[str, list[str]]) -> float:
    if isinstance(value, bool) or value is None or value == "":
        errors.setdefault("amount_usd", []).append("A number of US dollars greater than 0.")
        return 0.0
    try:
        amount = float(value)
    except (TypeError, ValueError):
        errors.setdefault("amount_usd", []).append("A number of US dollars greater than 0.")
        return 0.0
    if not math.isfinite(amount) or amount <= 0 or amount > MAX_AMOUNT:
        errors.setdefault("amount_usd", []).append(f"A number of US dollars greater than 0, at most {MAX_AMOUNT:.0f}.")
    return amount


def _thresholds(value: Any, errors: dict[str, list[str]]) -> list[int]:
    if value is None or value == "":
        return list(DEFAULT_THRESHOLDS)
    if isinstance(value, str):
        value = [part.strip() for part in value.replace(";", ",").split(",") if part.strip()]
    message = f"1 to {MAX_THRESHOLDS} whole percentages from 1 to 1000, e.g. [50, 80, 100]."
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_THRESHOLDS:
        errors.setdefault("thresholds", []).append(message)
        return []
    out: set[int] = set()
    for item in value:
        if isinstance(item, bool):
            errors.setdefault("thresholds", []).append(message)
            return []
        try:
            number = float(item)
        except (TypeError, ValueError):
            errors.setdefault("thresholds", []).append(message)
            return []
        if not math.isfinite(number) or number != int(number) or not 1 <= number <= 1000:
            errors.setdefault("thresholds", []).append(message)
            return []
        out.add(int(number))
    return sorted(out)


def _channel_ids(value: Any, errors: dict[str, list[str]]) -> list[int]:
    if value is None or value == "":
        return []
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int | str) for v in value):
        errors.setdefault("channels", []).append("A list of channel ids.")
        return []
    try:
        ids = sorted({int(v) for v in value})
    except ValueError:
        errors.setdefault("channels", []).append("A list of channel ids.")
        return []
    if any(not 0 < i < 2**63 for i in ids):
        errors.setdefault("channels", []).append("A list of channel ids.")
        return []
    return ids


BUDGET_FIELDS = {"name", "amount_usd", "period", "scope", "thresholds", "mode", "channels"}


def budget_input_parse(data: Any, *, base: BudgetInput | None = None) -> BudgetInput:
    """A budget from JSON-like data.  With `base` (an update), fields not given keep their value."""
    if not isinstance(data, dict):
        raise InputError({"non_field_errors": ["A JSON object."]})
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(data) - BUDGET_FIELDS - {"id", "hard"})
    if unknown:
        allowed = ", ".join(sorted(BUDGET_FIELDS))
        errors["non_field_errors"] = [f"Unknown fields: {', '.join(unknown)} (allowed: {allowed})."]
    given = base or BudgetInput(name="", amount_usd=0.0, period="")
    name = given.name
    if "name" in data or base is None:
        name = _text(data.get("name"), "name", 100, errors, required=True) or ""
    amount = given.amount_usd
    if "amount_usd" in data or base is None:
        amount = _amount(data.get("amount_usd"), errors)
    period = given.period
    if "period" in data or base is None:
        period = data.get("period")  # type: ignore[assignment]
        if period not in {p for p, _ in Budget.PERIODS}:
            errors.setdefault("period", []).append('One of "day", "week", "month".')
    mode = given.mode
    if "mode" in data:
        mode = data.get("mode")  # type: ignore[assignment]
        if mode not in {Budget.SOFT, Budget.HARD}:
            errors.setdefault("mode", []).append('One of "soft", "hard".')
    thresholds = given.thresholds
    if "thresholds" in data:
        thresholds = _thresholds(data.get("thresholds"), errors)
    channels = given.channel_ids
    if "channels" in data:
        channels = _channel_ids(data.get("channels"), errors)
    section, model, service = given.section, given.model, given.service
    key, value = given.attribute_key, given.attribute_value
    if "scope" in data:
        scope = data.get("scope")
        if scope is None:
            scope = {}
        if not isinstance(scope, dict):
            errors.setdefault("scope", []).append(
                'An object {"section", "model", "service", "attribute": {"key", "value"}}; each may be null.'
            )
            scope = {}
        extra = sorted(set(scope) - {"section", "model", "service", "attribute"})
        if extra:
            errors.setdefault("scope", []).append(
                f"Unknown scope fields: {', '.join(extra)} (allowed: section, model, service, attribute)."
            )
        section = _text(scope.get("section"), "scope.section", SCOPE_LIMITS["section"], errors)
        model = _text(scope.get("model"), "scope.model", SCOPE_LIMITS["model"], errors)
        service = _text(scope.get("service"), "scope.service", SCOPE_LIMITS["service"], errors)
        key, value = _attribute(scope.get("attribute"), errors)
    if errors:
        raise InputError(errors)
    return BudgetInput(
        name=name,
        amount_usd=amount,
        period=period,
        section=section,
        model=model,
        service=service,
        attribute_key=key,
        attribute_value=value if key else None,
        thresholds=thresholds,
        mode=mode,
        channel_ids=channels,
    )


def budget_input_of(budget: Budget, channel_ids: list[int]) -> BudgetInput:
    return BudgetInput(
        name=budget.name,
        amount_usd=budget.amount_usd,
        period=budget.period,
        section=budget.scope_section,
        model=budget.scope_model,
        service=budget.scope_service,
        attribute_key=budget.scope_attribute_key,
        attribute_value=budget.scope_attribute_value,
        thresholds=list(budget.thresholds),
        mode=budget.mode,
        channel_ids=channel_ids,
    )


@dataclass(slots=True)
class ChannelInput:
    kind: str
    name: str
    target: str
    insight_min_severity: str = ""
    digest: str = ""


def channel_input_parse(data: dict[str, Any]) -> ChannelInput:
    errors: dict[str, list[str]] = {}
    kind = data.get("kind")
    if kind not in {k for k, _ in Channel.KINDS}:
        errors["kind"] = ['One of "email", "slack", "webhook".']
    name = _text(data.get("name"), "name", 100, errors, required=True) or ""
    target = _text(data.get("target"), "target", 2000, errors, required=True) or ""
    if target and kind == Channel.EMAIL:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        if not 1 <= len(addresses) <= MAX_RECIPIENTS:
            errors.setdefault("target", []).append(f"1 to {MAX_RECIPIENTS} email addresses, separated by commas.")
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                errors.setdefault("target", []).append(f"{address!r} is not an email address.")
        target = ", ".join(addresses)
    elif target and kind in {Channel.SLACK, Channel.WEBHOOK}:
        try:
            parts = urlsplit(target)
            ok = parts.scheme in {"http", "https"} and bool(parts.hostname) and (parts.port or 1) > 0
        except ValueError:
            ok = False
        if not ok or any(c.isspace() for c in target):
            errors.setdefault("target", []).append("An http:// or https:// URL.")
    severity = data.get("insight_min_severity") or ""
    if severity not in {"", "low", "medium", "high"}:
        errors["insight_min_severity"] = ['One of "", "low", "medium", "high".']
    digest = data.get("digest") or ""
    if digest not in {"", "daily", "weekly"}:
        errors["digest"] = ['One of "", "daily", "weekly".']
    if errors:
        raise InputError(errors)
    return ChannelInput(kind=str(kind), name=name, target=target, insight_min_severity=severity, digest=digest)


def target_hint(kind: str, target: str) -> str:
    """What the dashboard shows of a saved target: the host, or the first address, never the secret path."""
    if kind == Channel.EMAIL:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        first = addresses[0] if addresses else ""
        local, _, domain = first.partition("@")
        shown = f"{local[:1]}…@{domain}" if domain else "…"
        return shown + (f" (+{len(addresses) - 1})" if len(addresses) > 1 else "")
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…{target[-4:]}"
