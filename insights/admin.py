from django.contrib import admin

from insights.models import Insight, InsightTrack


@admin.register(Insight)
class InsightAdmin(admin.ModelAdmin):
    """Read-only: insights are written by the job only."""

    list_display = [
        "generated_at",
        "project",
        "kind",
        "severity",
        "section",
        "model",
        "endpoint",
        "observed",
        "baseline",
        "ratio",
        "est_savings_usd",
    ]
    list_filter = ["kind", "severity", "project"]
    search_fields = ["section", "model", "endpoint", "message"]
    ordering = ["-generated_at", "kind"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(InsightTrack)
class InsightTrackAdmin(admin.ModelAdmin):
    """Read-only: the job keeps the history; dismiss and snooze are on the Insights page."""

    list_display = ["last_seen_at", "project", "kind", "section", "model", "endpoint", "dismissed_at", "snoozed_until"]
    list_filter = ["kind", "project"]
    search_fields = ["section", "model", "endpoint", "message"]
    ordering = ["-last_seen_at"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
