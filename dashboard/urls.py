from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("dashboard/runs/", views.run_list_page, name="runs"),
    path("dashboard/runs/<path:run_id>/", views.run_detail, name="run-detail"),
    path("dashboard/insights/", views.insights, name="insights"),
    path("dashboard/insights/<int:insight_id>/<str:action>/", views.insight_action, name="insight-action"),
    path("dashboard/insights/history/<int:track_id>/restore/", views.insight_restore, name="insight-restore"),
    path("dashboard/pricing/", views.pricing, name="pricing"),
    path("dashboard/timezone/", views.timezone_set, name="timezone"),
]
