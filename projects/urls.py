from django.urls import path

from projects import views

app_name = "projects"

urlpatterns = [
    path("dashboard/settings/", views.settings_page, name="settings"),
]
