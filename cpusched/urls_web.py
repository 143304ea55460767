"""Sign-in, sign-out and the configuration page."""

from django.contrib.auth import views as auth_views
from django.urls import path

from cpusched import views

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=False),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("config/", views.config_page, name="config"),
    path("config/validate/", views.config_validate, name="config-validate"),
    path("config/save/", views.config_save, name="config-save"),
    path("config/reset/", views.config_reset, name="config-reset"),
    path(
        "config/rollback/<int:change_id>/",
        views.config_rollback,
        name="config-rollback",
    ),
    path("config/history/", views.config_history, name="config-history"),
    path("config/export/", views.config_export, name="config-export"),
    path("config/import/", views.config_import, name="config-import"),
]
