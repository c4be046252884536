"""Stored insights (SPEC §7).

One `InsightComputation` per project and window end: the job runs every few
minutes over a sliding 24 h window, each run writes (or, when rerun for the
same moment, rewrites) its computation, and older computations of the
project are pruned, so `GET /insights/daily` serves exactly the latest one.
Inside a computation a finding is unique by (kind, section, model,
endpoint): rerunning the job never duplicates an insight.
"""

from __future__ import annotations

from django.conf import settings
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


class InsightTrack(models.Model):
    """One finding followed across computations: its key (kind, section,
    model, endpoint), when it was first and last seen with its latest
    figures (the insights history), and what a user did about it.

    Dismissed: quiet until its figures move materially (MATERIAL_CHANGE) from
    those it had when dismissed; the job checks at every computation and
    lifts the dismissal when they do.  Snoozed: quiet until `snoozed_until`.
    """

    MATERIAL_CHANGE = 0.20  # observed or ratio moving more than 20 % from the dismissed figures

    project = models.ForeignKey(Project, on_delete=models.CASCADE, db_index=False)
    kind = models.CharField(max_length=32)
    section = models.CharField(max_length=256)
    model = models.CharField(max_length=128, default="", blank=True)
    endpoint = models.CharField(max_length=128, default="", blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # The latest figures (as last computed), for the history.
    severity = models.CharField(max_length=8, default="low")
    observed = models.FloatField(default=0)
    baseline = models.FloatField(default=0)
    ratio = models.FloatField(default=0)
    est_savings_usd = models.FloatField(null=True, blank=True)
    message = models.TextField(default="")
    window_start = models.DateTimeField(null=True)
    window_end = models.DateTimeField(null=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)
    dismissed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    dismissed_observed = models.FloatField(null=True, blank=True)
    dismissed_ratio = models.FloatField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind", "section", "model", "endpoint"], name="insighttrack_unique"
            ),
        ]
        indexes = [models.Index(fields=["project", "-last_seen_at"], name="insighttrack_history")]

    def __str__(self) -> str:
        return f"{self.kind} {self.section} {self.model or self.endpoint}".strip()

    def changed_materially(self, *, observed: float, ratio: float) -> bool:
        """Whether these figures are more than MATERIAL_CHANGE away from the dismissed ones."""
        for now, then in ((observed, self.dismissed_observed), (ratio, self.dismissed_ratio)):
            if then is None:
                continue
            if then == 0:
                if now != 0:
                    return True
            elif abs(now - then) > self.MATERIAL_CHANGE * abs(then):
                return True
        return False

    def quiet_at(self, moment: object) -> bool:
        """Dismissed, or snoozed past `moment`."""
        return self.dismissed_at is not None or (self.snoozed_until is not None and self.snoozed_until > moment)  # type: ignore[operator]

    @property
    def message_text(self) -> str:
        return message_text(self.message)


def message_text(message: str) -> str:
    """The message as plain text: the detectors mark labels as Markdown code spans."""
    return message.replace("`", "")


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
    track = models.ForeignKey(InsightTrack, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Dismissed or snoozed when computed (or since): not listed as a current insight.
    quiet = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["computation", "kind", "section", "model", "endpoint"], name="insight_finding_unique"
            ),
        ]
        indexes = [models.Index(fields=["project", "-window_end"], name="insight_project_latest")]

    def __str__(self) -> str:
        return f"{self.kind} {self.section} {self.model or self.endpoint}".strip()

    @property
    def message_text(self) -> str:
        return message_text(self.message)
