from django.urls import path

from reconciliation import views

app_name = "reconciliation"

urlpatterns = [
    path("", views.reconciliation_page, name="page"),
    path("export.csv", views.reconciliation_export, name="export"),
    path("links/", views.reconciliation_links, name="links"),
]
