from django.contrib import admin

from insights.models import Insight


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
