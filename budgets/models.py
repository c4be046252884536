"""Budgets, the channels alerts go out through, and the log of every delivery.

Spend is never read from events: `BudgetSpend` keeps, per budget and
quarter-hour (UTC), what ingest added (`spent_usd`, `calls`) and what a
recount of stored events found for the time before ingest started counting
(`recount_usd`, `recount_calls`); see budgets/spend.py for how the two never
overlap.  Quarter-hours because every time zone in use today is offset from
UTC by a multiple of 15 minutes, so a calendar day, week or month in the
project's zone is a whole number of buckets, and a trailing 24 h rate is 96 of
them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from projects.models import Project

DEFAULT_THRESHOLDS = (50, 80, 100)


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class Channel(models.Model):
    EMAIL = "email"
    SLACK = "slack"
    WEBHOOK = "webhook"
    KINDS = [(EMAIL, "Email"), (SLACK, "Slack incoming webhook"), (WEBHOOK, "Webhook (signed JSON)")]
    SEVERITIES = [("low", "low"), ("medium", "medium"), ("high", "high")]
    DIGESTS = [("", "no digest"), ("daily", "daily"), ("weekly", "weekly")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="alert_channels")
    kind = models.CharField(max_length=16, choices=KINDS)
    name = models.CharField(max_length=100)
    # Email: addresses separated by commas; Slack / webhook: the URL.  A secret
    # (a Slack URL posts to the channel): never rendered again, `target_hint` is.
    target = models.TextField()
    target_hint = models.CharField(max_length=120)
    # Webhooks: the HMAC-SHA256 key, generated and shown once.
    signing_secret = models.CharField(max_length=64, blank=True, default="")
    # Alert on a new insight of at least this severity ("" = no insight alerts).
    insight_min_severity = models.CharField(max_length=8, choices=SEVERITIES, blank=True, default="")
    digest = models.CharField(max_length=8, choices=DIGESTS, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="budgets_channel_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Budget(models.Model):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    PERIODS = [(DAY, "day"), (WEEK, "week"), (MONTH, "month")]
    SOFT = "soft"
    HARD = "hard"
    MODES = [(SOFT, "soft (notify)"), (HARD, "hard (notify; the SDK guard may refuse calls)")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=100)
    amount_usd = models.FloatField()
    period = models.CharField(max_length=8, choices=PERIODS)
    # Scope: every field set must match (AND); none set = the whole project.
    scope_section = models.CharField(max_length=256, null=True, blank=True)
    scope_model = models.CharField(max_length=128, null=True, blank=True)
    scope_service = models.CharField(max_length=128, null=True, blank=True)
    scope_attribute_key = models.CharField(max_length=64, null=True, blank=True)
    scope_attribute_value = models.CharField(max_length=200, null=True, blank=True)
    thresholds = models.JSONField(default=default_thresholds)
    mode = models.CharField(max_length=8, choices=MODES, default=SOFT)
    channels = models.ManyToManyField(Channel, blank=True, related_name="budgets")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Spend accounting (budgets/spend.py).  A new scope or period starts a new
    # generation: its spend rows are new, the old generation's are ignored.
    generation = models.PositiveIntegerField(default=1)
    # Ingest adds events received at or after this moment; a recount of stored
    # events covers those received before it (started at or after recount_from).
    counted_from = models.DateTimeField()
    recount_from = models.DateTimeField()
    # Set when the final recount ran (once every batch received before
    # counted_from had surely committed).
    recounted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="budgets_budget_name_unique")]

    def __str__(self) -> str:
        return f"{self.name}: ${self.amount_usd:g}/{self.period}"

    @property
    def scope(self) -> dict[str, object]:
        attribute = (
            {"key": self.scope_attribute_key, "value": self.scope_attribute_value or ""}
            if self.scope_attribute_key
            else None
        )
        return {
            "section": self.scope_section or None,
            "model": self.scope_model or None,
            "service": self.scope_service or None,
            "attribute": attribute,
        }

    @property
    def scope_label(self) -> str:
        parts = []
        if self.scope_section:
            parts.append(f"section {self.scope_section}")
        if self.scope_model:
            parts.append(f"model {self.scope_model}")
        if self.scope_service:
            parts.append(f"service {self.scope_service}")
        if self.scope_attribute_key:
            parts.append(f"{self.scope_attribute_key}={self.scope_attribute_value}")
        return " and ".join(parts) or "the whole project"


class BudgetSpend(models.Model):
    """A budget's spend in one UTC quarter-hour, for one generation of its scope."""

    # No database constraint: ingest may still add to a budget another process
    # deleted a moment ago (its cache lags by at most a few seconds), which
    # must not fail the batch; the evaluator removes such orphans.
    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, db_constraint=False, related_name="spend")
    generation = models.PositiveIntegerField()
    bucket = models.DateTimeField()
    spent_usd = models.FloatField(default=0)
    calls = models.BigIntegerField(default=0)
    recount_usd = models.FloatField(default=0)
    recount_calls = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # Ingest's upsert key; also serves the evaluator's range reads.
            models.UniqueConstraint(fields=["budget", "generation", "bucket"], name="budgets_spend_unique"),
        ]


class Delivery(models.Model):
    """One notification through one channel, sent at most once (its key is unique)."""

    THRESHOLD = "threshold"
    FORECAST = "forecast"
    TEST = "test"
    INSIGHT = "insight"
    DIGEST = "digest"
    KINDS = [(k, k) for k in (THRESHOLD, FORECAST, TEST, INSIGHT, DIGEST)]
    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    STATUSES = [(s, s) for s in (PENDING, SENDING, RETRYING, SENT, FAILED)]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=16, choices=KINDS)
    budget = models.ForeignKey(Budget, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    period_start = models.DateTimeField(null=True, blank=True)
    threshold = models.PositiveIntegerField(null=True, blank=True)
    # What makes this notification the same one: threshold:<budget>:<gen>:<period>:<pct>,
    # forecast:<budget>:<gen>:<period>, insight:<digest of the finding and day>, digest:<kind>:<day>, test:<uuid>.
    dedupe_key = models.CharField(max_length=200)
    subject = models.CharField(max_length=300)
    text = models.TextField()
    # The webhook's JSON body (built when the alert fired, so retries send the same figures).
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Idempotency by the database: two evaluators racing insert one row.
            models.UniqueConstraint(fields=["channel", "dedupe_key"], name="budgets_delivery_once"),
        ]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="budgets_delivery_history"),
            # The sweep for deliveries whose task was lost: few rows are ever unsent.
            models.Index(
                fields=["next_attempt_at"],
                name="budgets_delivery_unsent",
                condition=models.Q(status__in=["pending", "sending", "retrying"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} → {self.channel_id}: {self.status}"
