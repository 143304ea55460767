"""URL routing: pages, admin, the REST API, health and metrics."""

from django.contrib import admin
from django.urls import include, path

from cpusched.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("reservations/", include("reservations.urls")),
    path("", include("cpusched.urls_web")),
    path("", include("monitoring.urls")),
]
