"""What the providers billed, stored beside (never inside) what llmobserve observed.

The OpenAI bill is an organization's: rows are stored once per organization
(one admin key) and each llmobserve project reads the OpenAI projects it is
linked to (none linked: the whole organization).  A day is imported whole:
re-importing it replaces its rows in one transaction, so a re-run never
doubles a figure.
"""

from __future__ import annotations

from django.db import models

from projects.models import Project


class OpenAIProjectLink(models.Model):
    """An OpenAI project id (proj_…) whose bill belongs to this llmobserve project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="openai_project_links")
    openai_project_id = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "openai_project_id"], name="openai_link_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project} ← {self.openai_project_id}"


class BilledCost(models.Model):
    """One Costs API result: a day's amount for one line item of one OpenAI project.

    `model` is the line item's model folded as observed models are (snapshot
    suffix removed); `kind` is input / cached_input / output / other; `tier`
    the service-tier prefix of the line item (flex, priority, …) if any.
    """

    day = models.DateField()
    openai_project_id = models.CharField(max_length=64, default="")
    line_item = models.CharField(max_length=255, default="")
    model = models.CharField(max_length=255, default="")
    kind = models.CharField(max_length=16, default="other")
    tier = models.CharField(max_length=32, default="")
    amount_usd = models.DecimalField(max_digits=20, decimal_places=10)
    currency = models.CharField(max_length=8, default="usd")
    imported_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "openai_project_id", "line_item"], name="billedcost_unique"),
        ]
        indexes = [models.Index(fields=["day", "model"], name="billedcost_day_model")]


class BilledUsage(models.Model):
    """One Usage API result: a day's tokens and requests for one model of one OpenAI project."""

    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    ENDPOINTS = (COMPLETIONS, EMBEDDINGS)

    day = models.DateField()
    endpoint = models.CharField(max_length=32)
    openai_project_id = models.CharField(max_length=64, default="")
    model_id = models.CharField(max_length=255, default="")  # as billed: gpt-4o-2024-08-06
    model = models.CharField(max_length=255, default="")  # folded: gpt-4o
    input_tokens = models.BigIntegerField(default=0)
    input_cached_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    num_model_requests = models.BigIntegerField(default=0)
    imported_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "endpoint", "openai_project_id", "model_id"], name="billedusage_unique"
            ),
        ]
        indexes = [models.Index(fields=["day", "model"], name="billedusage_day_model")]


class ImportedDay(models.Model):
    """A UTC day whose bill was fetched, and when: a day fetched long enough
    after it ended is final and is not fetched again by the daily job."""

    day = models.DateField(unique=True)
    fetched_at = models.DateTimeField()
    final = models.BooleanField(default=False)
    cost_results = models.IntegerField(default=0)
    usage_results = models.IntegerField(default=0)


class PineconeUsage(models.Model):
    """One row of a Pinecone usage export (CSV), as imported."""

    day = models.DateField()
    pinecone_project = models.CharField(max_length=255, default="")
    resource = models.CharField(max_length=255, default="")  # the index (or assistant)
    sku = models.CharField(max_length=255, default="")
    quantity = models.FloatField(default=0)
    unit = models.CharField(max_length=64, default="")
    cost_usd = models.DecimalField(max_digits=20, decimal_places=10)
    imported_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "pinecone_project", "resource", "sku", "unit"], name="pineconeusage_unique"
            ),
        ]
