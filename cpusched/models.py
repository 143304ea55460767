"""Stored parameters, their history, and revision counters other processes poll."""

from __future__ import annotations

from django.db import models, transaction
from django.db.models import F


class Parameter(models.Model):
    """A value set at run time (the database layer of the configuration)."""

    key = models.CharField(max_length=100, unique=True)
    value = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} = {self.value}"

    @property
    def category(self) -> str:
        return self.key.split(".", 1)[0]


class ParameterChange(models.Model):
    """One accepted change of one stored value; ``None`` means "not stored"."""

    key = models.CharField(max_length=100, db_index=True)
    old_value = models.TextField(null=True, blank=True)
    new_value = models.TextField(null=True, blank=True)
    changed_at = models.DateTimeField(auto_now_add=True, db_index=True)
    changed_by = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "parameter history entry"
        verbose_name_plural = "parameter history"

    def __str__(self) -> str:
        return f"#{self.id} {self.key}: {self.old_value} -> {self.new_value}"


class Revision(models.Model):
    """A counter bumped on every change of a kind of state (``config``...).

    Long-running processes read it once a tick, which costs one indexed
    SELECT, and reload only when it moved.
    """

    name = models.CharField(max_length=50, primary_key=True)
    number = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.number}"

    @classmethod
    def current(cls, name: str) -> int:
        row = cls.objects.filter(name=name).values_list("number", flat=True).first()
        return row or 0

    @classmethod
    def bump(cls, name: str) -> int:
        with transaction.atomic():
            cls.objects.get_or_create(name=name)
            cls.objects.filter(name=name).update(number=F("number") + 1)
            return cls.current(name)


class ApiKey(models.Model):
    """A key scripts send in the ``X-API-Key`` header instead of logging in."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True, editable=False)
    hashed = models.CharField(max_length=128, editable=False)
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
