from django.urls import path

from attribution import views
from attribution.api import CostsView

app_name = "attribution"

urlpatterns = [
    path("costs", CostsView.as_view(), name="costs"),
    path("dashboard/breakdown/", views.breakdown, name="breakdown"),
]
