"""Admin for the configuration: every registry key, history, rollback, files.

The parameter changelist lists the whole registry, not only stored rows, with
each key's effective value and the layer it comes from. Edits, imports, resets
and rollbacks all go through :mod:`cpusched.config`, which validates the whole
change and stores all of it or nothing.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from cpusched import apikeys, config
from cpusched.forms import ImportForm, ParameterValuesForm
from cpusched.models import ApiKey, Parameter, ParameterChange, Revision
from cpusched.params import CATEGORIES, PARAMS, Param, by_category

SOURCE_NOTE = {
    "environment": "set by an environment variable (locked)",
    "file": "set in config.ini (locked)",
    "database": "changed at run time",
    "default": "built-in default",
}


def _user(request: HttpRequest) -> str:
    return request.user.get_username()


def _report(request: HttpRequest, error: config.ConfigError, what: str) -> None:
    count = len(error.problems)
    noun = "problem" if count == 1 else "problems"
    messages.error(request, f"{what} refused ({count} {noun}); nothing was stored")
    for problem in error.problems:
        messages.error(request, str(problem))


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records written by the system: viewable, never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Parameter)
class ParameterAdmin(admin.ModelAdmin):
    """The registry view; stored rows are only one of its layers."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("key/<str:key>/", wrap(self.key_view), name="cpusched_parameter_key"),
            path(
                "edit/<str:category>/",
                wrap(self.category_view),
                name="cpusched_parameter_edit",
            ),
            path("export/", wrap(self.export_view), name="cpusched_parameter_export"),
            path("import/", wrap(self.import_view), name="cpusched_parameter_import"),
            path("reset/", wrap(self.reset_view), name="cpusched_parameter_reset"),
            *super().get_urls(),
        ]

    # -- the registry list --------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        self._require(request, change=False)
        try:
            current = config.effective()
        except config.ConfigError as exc:
            return self._broken(request, exc)

        category = request.GET.get("category", "")
        source = request.GET.get("source", "")
        query = request.GET.get("q", "").strip().lower()
        rows = [
            (p, current[p.key])
            for p in PARAMS.values()
            if (not category or p.category == category)
            and (not source or current[p.key].source == source)
            and (not query or query in p.key or query in p.description.lower())
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "All parameters",
            "groups": _grouped(rows),
            "count": len(rows),
            "total": len(PARAMS),
            "category": category,
            "source": source,
            "query": request.GET.get("q", ""),
            "categories": CATEGORIES,
            "sources": config.SOURCES,
            "source_note": SOURCE_NOTE,
            "revision": config.current_revision(),
            "can_change": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(
            request, "admin/cpusched/parameter/registry.html", context
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        row = Parameter.objects.filter(pk=object_id).first()
        if row is None or row.key not in PARAMS:
            raise Http404(f"No parameter with id {object_id!r}")
        return HttpResponseRedirect(_url("key", key=row.key))

    # -- editing ------------------------------------------------------------

    def key_view(self, request: HttpRequest, key: str) -> HttpResponse:
        param = PARAMS.get(key)
        if param is None:
            raise Http404(f"Unknown parameter {key!r}")
        history = ParameterChange.objects.filter(key=key)[:20]
        return self._edit(request, [param], key, {"param": param, "history": history})

    def category_view(self, request: HttpRequest, category: str) -> HttpResponse:
        if category not in CATEGORIES:
            raise Http404(f"Unknown category {category!r}")
        title = f"Edit {category} parameters"
        return self._edit(request, by_category(category), title, {"category": category})

    def _edit(
        self, request: HttpRequest, params: list[Param], title: str, extra: dict
    ) -> HttpResponse:
        self._require(request, change=request.method == "POST")
        try:
            current = config.effective()
        except config.ConfigError as exc:
            return self._broken(request, exc)

        data = request.POST if request.method == "POST" else None
        form = ParameterValuesForm(params, current, data=data)
        if data is not None and form.is_valid():
            done = self._save(request, form)
            if done:
                return HttpResponseRedirect(request.path)

        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "form": form,
            "source_note": SOURCE_NOTE,
            "can_change": self.has_change_permission(request),
            **extra,
        }
        return TemplateResponse(request, "admin/cpusched/parameter/edit.html", context)

    def _save(self, request: HttpRequest, form: ParameterValuesForm) -> bool:
        changes = form.changes()
        if not changes:
            messages.info(request, "Nothing changed")
            return True
        try:
            revision = config.apply(
                changes, user=_user(request), reason=form.cleaned_data["reason"]
            )
        except config.ConfigError as exc:
            form.add_problems(exc.problems)
            _report(request, exc, "The change was")
            return False
        names = ", ".join(sorted(changes))
        messages.success(request, f"Saved {names} (configuration revision {revision})")
        restart = [k for k in changes if PARAMS[k].restart]
        if restart:
            messages.warning(
                request,
                "Takes effect after a restart of the service: " + ", ".join(restart),
            )
        return True

    # -- files and resets ---------------------------------------------------

    def export_view(self, request: HttpRequest) -> HttpResponse:
        self._require(request, change=False)
        try:
            data = config.export()
        except config.ConfigError as exc:
            return self._broken(request, exc)
        response = HttpResponse(
            json.dumps(data, indent=2, sort_keys=True) + "\n",
            content_type="application/json",
        )
        name = f"cpusched-config-r{data['revision']}.json"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        self._require(request, change=True)
        form = ImportForm(request.POST or None, request.FILES or None)
        problems: list[config.Problem] = []
        if request.method == "POST" and form.is_valid():
            try:
                values = config.parse_import(form.cleaned_data["file"])
                revision = config.import_values(
                    values, user=_user(request), reason=form.cleaned_data["reason"]
                )
            except config.ConfigError as exc:
                problems = exc.problems
                _report(request, exc, "The import was")
            else:
                messages.success(
                    request, f"Imported; configuration revision {revision}"
                )
                return HttpResponseRedirect(_url("changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import parameters from JSON",
            "form": form,
            "problems": problems,
        }
        return TemplateResponse(
            request, "admin/cpusched/parameter/import.html", context
        )

    def reset_view(self, request: HttpRequest) -> HttpResponse:
        """GET: which stored values a reset removes; POST: remove them."""
        self._require(request, change=True)
        source = request.POST if request.method == "POST" else request.GET
        everything = source.get("all") == "1"
        keys = None if everything else source.getlist("key")
        if not everything and not keys:
            messages.error(request, "Choose a parameter to reset, or all of them")
            return HttpResponseRedirect(_url("changelist"))

        if request.method == "POST":
            return self._reset(request, keys)
        affected = Parameter.objects.all()
        if keys is not None:
            affected = affected.filter(key__in=keys)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Reset to defaults",
            "everything": everything,
            "keys": keys or [],
            "affected": [(row, PARAMS.get(row.key)) for row in affected],
        }
        return TemplateResponse(request, "admin/cpusched/parameter/reset.html", context)

    def _reset(self, request: HttpRequest, keys: list[str] | None) -> HttpResponse:
        reason = request.POST.get("reason", "")
        try:
            revision = config.reset(keys, user=_user(request), reason=reason)
        except config.ConfigError as exc:
            _report(request, exc, "The reset was")
        else:
            what = "All parameters" if keys is None else ", ".join(keys)
            messages.success(
                request, f"{what} reset to defaults (configuration revision {revision})"
            )
        return HttpResponseRedirect(_url("changelist"))

    # -- helpers ------------------------------------------------------------

    def _require(self, request: HttpRequest, change: bool) -> None:
        allowed = (
            self.has_change_permission(request)
            if change
            else self.has_view_or_change_permission(request)
        )
        if not allowed:
            raise PermissionDenied

    def _broken(self, request: HttpRequest, error: config.ConfigError) -> HttpResponse:
        """The configuration cannot be read at all: say where, and what is wrong."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "The configuration cannot be read",
            "problems": error.problems,
        }
        return TemplateResponse(
            request, "admin/cpusched/parameter/broken.html", context, status=500
        )


def _url(name: str, **kwargs: str) -> str:
    return reverse(f"admin:cpusched_parameter_{name}", kwargs=kwargs or None)


def _grouped(rows: list[tuple[Param, config.Effective]]) -> list[tuple[str, list]]:
    groups: dict[str, list] = {}
    for param, entry in rows:
        groups.setdefault(param.category, []).append((param, entry))
    return list(groups.items())


class CategoryFilter(admin.SimpleListFilter):
    title = "category"
    parameter_name = "category"

    def lookups(self, request, model_admin):
        return [(c, c) for c in CATEGORIES]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(key__startswith=self.value() + ".")
        return queryset


@admin.register(ParameterChange)
class ParameterChangeAdmin(ReadOnlyAdmin):
    """The history: every accepted change, each one a point to roll back to."""

    list_display = (
        "id",
        "changed_at",
        "key",
        "old_value",
        "new_value",
        "changed_by",
        "reason",
        "rollback_link",
    )
    list_display_links = ("id", "changed_at")
    list_filter = (CategoryFilter, "changed_by")
    search_fields = ("key", "reason", "changed_by")
    readonly_fields = (
        "key",
        "old_value",
        "new_value",
        "changed_at",
        "changed_by",
        "reason",
        "rollback_link",
    )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:change_id>/rollback/",
                wrap(self.rollback_view),
                name="cpusched_parameterchange_rollback",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="rollback")
    def rollback_link(self, obj: ParameterChange) -> str:
        url = reverse("admin:cpusched_parameterchange_rollback", args=[obj.id])
        return format_html('<a href="{}">Roll back to here</a>', url)

    def rollback_view(self, request: HttpRequest, change_id: int) -> HttpResponse:
        """GET: what a rollback to right after ``change_id`` changes; POST: do it."""
        if not request.user.has_perm("cpusched.change_parameter"):
            raise PermissionDenied
        change = ParameterChange.objects.filter(id=change_id).first()
        if change is None:
            raise Http404(f"No history entry #{change_id}")

        if request.method == "POST":
            return self._rollback(request, change)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Roll back to history entry #{change.id}",
            "change": change,
            "plan": _rollback_plan(change.id),
        }
        return TemplateResponse(
            request, "admin/cpusched/parameterchange/rollback.html", context
        )

    def _rollback(self, request: HttpRequest, change: ParameterChange) -> HttpResponse:
        reason = request.POST.get("reason", "")
        try:
            revision = config.rollback(change.id, user=_user(request), reason=reason)
        except config.ConfigError as exc:
            _report(request, exc, "The rollback was")
            return HttpResponseRedirect(request.path)
        messages.success(
            request,
            f"Rolled back to history entry #{change.id} "
            f"(configuration revision {revision})",
        )
        return HttpResponseRedirect(
            reverse("admin:cpusched_parameterchange_changelist")
        )


def _rollback_plan(change_id: int) -> list[tuple[str, str | None, str | None]]:
    """(key, stored now, stored after the rollback) for every key that moves."""
    target = config.stored_state_after(change_id)
    now = dict(Parameter.objects.values_list("key", "value"))
    keys = sorted(set(target) | set(now))
    return [(k, now.get(k), target.get(k)) for k in keys if now.get(k) != target.get(k)]


@admin.register(Revision)
class RevisionAdmin(ReadOnlyAdmin):
    list_display = ("name", "number", "changed_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys for scripts; the secret is shown once, on the page after adding."""

    list_display = ("name", "prefix", "user", "created_at", "last_used_at", "active")
    list_filter = ("active",)
    search_fields = ("name", "prefix", "user__username")
    actions = ["deactivate"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "user")
        return ("name", "user", "prefix", "active", "created_at", "last_used_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("user", "prefix", "created_at", "last_used_at")

    def get_changeform_initial_data(self, request):
        return {"user": request.user.pk}

    def save_model(self, request, obj, form, change):
        if not change:
            obj.prefix, secret = apikeys.new_secret()
            obj.hashed = apikeys.digest(secret)
            request._cpusched_api_secret = secret
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        """Show the secret on this one response; it is stored nowhere."""
        secret = getattr(request, "_cpusched_api_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "API key created",
            "key": obj,
            "secret": secret,
        }
        response = TemplateResponse(
            request, "admin/cpusched/apikey/created.html", context
        )
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Deactivate the selected keys")
    def deactivate(self, request, queryset):
        count = queryset.update(active=False)
        messages.success(request, f"{count} key(s) deactivated")
