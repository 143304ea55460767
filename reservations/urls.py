"""Reservation pages, included at /reservations/."""

from django.urls import path

from reservations import views

app_name = "reservations"

urlpatterns = [
    path("", views.reservation_list, name="list"),
    path("new/", views.create, name="create"),
    path("check/", views.check, name="check"),
    path("calendar/", views.calendar, name="calendar"),
    path("calendar/events/", views.events, name="events"),
    path("analysis/", views.analysis_view, name="analysis"),
    path("<uuid:pk>/edit/", views.edit, name="edit"),
    path("<uuid:pk>/toggle/", views.toggle, name="toggle"),
    path("<uuid:pk>/delete/", views.delete, name="delete"),
    path("<uuid:pk>/move/", views.move, name="move"),
]
