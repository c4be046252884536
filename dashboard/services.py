"""Dashboard writes: a user's own settings."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from projects.models import UserSettings, timezone_validate


def user_timezone_set(*, user: Any, timezone: str) -> UserSettings:
    """Store the IANA time zone the user's pages show times in; ValueError for an unknown name."""
    if not timezone or len(timezone) > 64:
        raise ValueError("a time zone name like Europe/Paris, at most 64 characters")
    try:
        timezone_validate(timezone)
    except ValidationError as exc:
        raise ValueError(f"{timezone!r} is not a time zone name like Europe/Paris") from exc
    settings, _ = UserSettings.objects.update_or_create(user=user, defaults={"timezone": timezone})
    return settings
