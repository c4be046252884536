from __future__ import annotations

import hashlib
import secrets
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

KEY_PREFIX = "lo_"


def timezone_validate(value: str) -> None:
    """An IANA zone name (``Europe/Paris``), as zoneinfo knows it."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"{value!r} is not a time zone (use an IANA name such as Europe/Paris)") from None


def hash_key(raw: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough: there is no
    # low-entropy secret to stretch, and ingest checks a key on every batch.
    return hashlib.sha256(raw.encode()).hexdigest()


class Project(models.Model):
    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    price_discount_percent = models.FloatField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="A negotiated discount on list prices (global and shipped), in percent.",
    )
    # Calendar periods (budget days, weeks and months) are the project's own.
    timezone = models.CharField(max_length=64, default="UTC", validators=[timezone_validate])
    # Raw events older than this many days are removed; null = the site's
    # EVENT_RETENTION_DAYS, 0 = keep forever.  Aggregates are kept either way.
    event_retention_days = models.PositiveIntegerField(null=True, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    OWNER = "owner"
    MEMBER = "member"
    ROLES = [(OWNER, "Owner"), (MEMBER, "Member")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    role = models.CharField(max_length=10, choices=ROLES, default=MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class ApiKey(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    # The first characters of the key, shown in the admin so a user can tell
    # keys apart; the key itself is never stored.
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    is_admin = models.BooleanField(default=False, help_text="An admin key may also PUT /pricing.")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked = models.BooleanField(default=False)
    # Written at most once a minute per key (a conditional update), so ingest
    # does not turn every batch into a write on this row.
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.project})"

    @classmethod
    def generate(cls, *, project: Project, name: str = "", is_admin: bool = False) -> tuple[ApiKey, str]:
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(project=project, name=name, prefix=raw[:10], key_hash=hash_key(raw), is_admin=is_admin)
        return key, raw


class UserSettings(models.Model):
    """A dashboard user's own settings: the time zone pages show days and times in."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="llmobserve_settings")
    timezone = models.CharField(max_length=64, default="UTC", validators=[timezone_validate])

    def __str__(self) -> str:
        return f"settings of {self.user}"
