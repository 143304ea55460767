"""URL routing: pages, admin, the REST API, health and metrics."""

from django.contrib import admin
from django.urls import include, path

from cpusched.api import api
from cpusched.health import health
from monitoring.metrics import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("reservations/", include("reservations.urls")),
    path("", include("cpusched.urls_web")),
    path("", include("monitoring.urls")),
]

handler400 = "cpusched.errors.bad_request"
