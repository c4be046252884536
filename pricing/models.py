from __future__ import annotations

from django.db import models

PROVIDER_WIDE = "*"


class Price(models.Model):
    """One version of a model's list price.

    Prices are versioned: an update adds a row effective from a moment, so an
    event is costed with the row in effect at its `started_at` and older
    events keep the price they were costed with.  `model` "*" is a
    provider-wide fallback (Pinecone's units do not depend on a model).
    """

    USER = "user"
    REGISTRY = "registry"
    SOURCES = [(USER, "added by a user (PUT /pricing, admin)"), (REGISTRY, "shipped pricing/registry.json")]

    # A project's own row (negotiated price, fine-tune, self-hosted model)
    # wins over global rows and the shipped source for that project only.
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="prices", db_index=False
    )
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=128, help_text="An exact id (also matches it plus a snapshot suffix), or *.")
    match_pattern = models.CharField(
        max_length=200, blank=True, default="", help_text="Optional regular expression a model id must fully match."
    )
    service_tier = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="Only for calls on this service tier (flex, priority, …, or batch: the Batch API); empty: any.",
    )
    input_per_1m = models.FloatField(default=0)
    cached_input_per_1m = models.FloatField(null=True, blank=True, help_text="Empty means the same as input.")
    output_per_1m = models.FloatField(default=0)
    per_1m_read_units = models.FloatField(default=0)
    per_1m_write_units = models.FloatField(default=0)
    per_request = models.FloatField(default=0)
    per_1m_units = models.JSONField(
        default=dict,
        blank=True,
        help_text='Further units, USD per 1M: {"input_audio_tokens": 40, "web_search_calls": 10000, …}',
    )
    cheaper_alternative = models.CharField(max_length=128, blank=True, default="")
    effective_from = models.DateTimeField()
    # Shipped history rows end where the maintained source takes over again.
    effective_until = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=SOURCES, default=USER)
    note = models.CharField(max_length=200, blank=True, default="", help_text="Where this price comes from.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "service_tier", "effective_from"],
                condition=models.Q(project__isnull=True),
                name="price_version_unique_global",
            ),
            models.UniqueConstraint(
                fields=["project", "provider", "model", "service_tier", "effective_from"],
                condition=models.Q(project__isnull=False),
                name="price_version_unique_project",
            ),
            models.CheckConstraint(
                condition=models.Q(input_per_1m__gte=0)
                & models.Q(output_per_1m__gte=0)
                & models.Q(per_1m_read_units__gte=0)
                & models.Q(per_1m_write_units__gte=0)
                & models.Q(per_request__gte=0),
                name="price_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} from {self.effective_from:%Y-%m-%d}"


def price_cost(
    rates: tuple[float, float | None, float, float, float, float],
    input_tokens: int,
    cached_input_tokens: int,
    output_tokens: int,
    read_units: float,
    write_units: float,
) -> float:
    """SPEC §3's formula.  `rates` is (input, cached or None, output, read, write, per_request)."""
    inp, cached, out, read, write, per_request = rates
    cached_rate = inp if cached is None else cached
    cached_tokens = min(cached_input_tokens, input_tokens)
    return (
        (input_tokens - cached_tokens) * inp / 1e6
        + cached_tokens * cached_rate / 1e6
        + output_tokens * out / 1e6
        + read_units * read / 1e6
        + write_units * write / 1e6
        + per_request
    )
