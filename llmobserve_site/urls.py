from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from budgets.api import BudgetDetailView, BudgetListView, BudgetStatusView
from events.api import RunDetailView, RunsLatestView
from events.views import events_ingest
from insights.api import InsightsDailyView
from llmobserve_site.health import health
from otlp.views import traces_export
from pricing.api import PricingResolveView, PricingView
from projects import views as project_views
from reconciliation.api import ReconciliationView

urlpatterns = [
    path("health", health, name="health"),
    path("events", events_ingest, name="events-ingest"),
    path("v1/traces", traces_export, name="otlp-traces"),
    path("runs/latest", RunsLatestView.as_view(), name="runs-latest"),
    path("runs/<path:run_id>", RunDetailView.as_view(), name="run-detail"),
    path("insights/daily", InsightsDailyView.as_view(), name="insights-daily"),
    path("budgets", BudgetListView.as_view(), name="budgets"),
    path("budgets/status", BudgetStatusView.as_view(), name="budgets-status"),
    path("budgets/<int:budget_id>", BudgetDetailView.as_view(), name="budget-detail"),
    path("dashboard/budgets/", include("budgets.urls")),
    path("pricing", PricingView.as_view(), name="pricing"),
    path("pricing/resolve", PricingResolveView.as_view(), name="pricing-resolve"),
    path("reconciliation", ReconciliationView.as_view(), name="reconciliation"),
    path("dashboard/reconciliation/", include("reconciliation.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", project_views.api_docs, name="api-docs"),
    path("favicon.ico", project_views.favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("attribution.urls")),
    path("", include("dashboard.urls")),
    path("", include("projects.urls")),
]
