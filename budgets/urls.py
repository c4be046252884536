from django.urls import path

from budgets import views

app_name = "budgets"

urlpatterns = [
    path("", views.budgets_page, name="page"),
    path("new/", views.budget_form, name="new"),
    path("<int:budget_id>/", views.budget_form, name="edit"),
    path("<int:budget_id>/delete/", views.budget_delete_view, name="delete"),
    path("channels/", views.channel_create_view, name="channel-new"),
    path("channels/<int:channel_id>/test/", views.channel_test_view, name="channel-test"),
    path("channels/<int:channel_id>/delete/", views.channel_delete_view, name="channel-delete"),
]
