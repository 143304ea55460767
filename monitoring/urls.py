"""Dashboard and alerts pages, and the fragments HTMX loads into them."""

from django.urls import path

from monitoring import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard/resources/", views.resources_panel, name="dashboard-resources"),
    path("alerts/", views.alerts_page, name="alerts"),
    path("alerts/table/", views.alerts_table, name="alerts-table"),
    path("alerts/count/", views.alerts_count, name="alerts-count"),
    path(
        "alerts/<int:pk>/acknowledge/",
        views.alert_acknowledge,
        name="alert-acknowledge",
    ),
]
