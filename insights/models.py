"""Stored insights (SPEC §7).

One `InsightComputation` per project and window end: the job runs every few
minutes over a sliding 24 h window, each run writes (or, when rerun for the
same moment, rewrites) its computation, and older computations of the
project are pruned, so `GET /insights/daily` serves exactly the latest one.
Inside a computation a finding is unique by (kind, section, model,
endpoint): rerunning the job never duplicates an insight.
"""

from __future__ import annotations

from django.db import models

from projects.models import Project


class InsightComputation(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    baseline_start = models.DateTimeField()
    generated_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "window_end"], name="insightcomputation_unique"),
        ]
        indexes = [models.Index(fields=["project", "-window_end"], name="insightcomp_latest")]

    def __str__(self) -> str:
        return f"{self.project_id} {self.window_start:%Y-%m-%d %H:%M} → {self.window_end:%Y-%m-%d %H:%M}"


class Insight(models.Model):
    SECTION_SPIKE = "section_spike"
    MODEL_INEFFICIENCY = "model_inefficiency"
    TOKEN_BLOAT = "token_bloat"
    RETRY_LOOP = "retry_loop"
    KINDS = [(k, k) for k in (SECTION_SPIKE, MODEL_INEFFICIENCY, TOKEN_BLOAT, RETRY_LOOP)]
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    SEVERITIES = [(HIGH, "high"), (MEDIUM, "medium"), (LOW, "low")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    computation = models.ForeignKey(InsightComputation, on_delete=models.CASCADE, related_name="insights")
    kind = models.CharField(max_length=32, choices=KINDS)
    severity = models.CharField(max_length=8, choices=SEVERITIES)
    # "" when the insight is not about one model / endpoint.
    section = models.CharField(max_length=256)
    model = models.CharField(max_length=128, default="", blank=True)
    endpoint = models.CharField(max_length=128, default="", blank=True)
    observed = models.FloatField()
    baseline = models.FloatField()
    ratio = models.FloatField()
    est_savings_usd = models.FloatField(null=True, blank=True)
    message = models.TextField()
    # Supporting figures (calls, runs, the cheaper model, …) for the dashboard.
    details = models.JSONField(default=dict, blank=True)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    generated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["computation", "kind", "section", "model", "endpoint"], name="insight_finding_unique"
            ),
        ]
        indexes = [models.Index(fields=["project", "-window_end"], name="insight_project_latest")]

    def __str__(self) -> str:
        return f"{self.kind} {self.section} {self.model or self.endpoint}".strip()
