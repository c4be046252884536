from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("dashboard/runs/", views.run_list_page, name="runs"),
    path("dashboard/runs/<path:run_id>/", views.run_detail, name="run-detail"),
    path("dashboard/insights/", views.insights, name="insights"),
    path("dashboard/pricing/", views.pricing, name="pricing"),
]
