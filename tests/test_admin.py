"""The admin: the parameter registry, edits, files, history, keys and alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from alerts.models import Alert
from cpusched import apikeys, config
from cpusched.models import ApiKey, Parameter, ParameterChange, Revision
from cpusched.params import PARAMS, by_category
from monitoring.models import LiveState, Sample, SampleAggregate
from scheduling.models import Decision, Event

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def layers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in PARAMS:
        monkeypatch.delenv(config.env_name(key), raising=False)
    path = tmp_path / "config.ini"
    monkeypatch.setenv("CPUSCHED_CONFIG", str(path))
    return path


def url(name: str, *args, **kwargs) -> str:
    return reverse(f"admin:{name}", args=args or None, kwargs=kwargs or None)


def stored() -> dict[str, str]:
    return dict(Parameter.objects.values_list("key", "value"))


def page(response) -> str:
    return response.content.decode()


def texts(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- the registry list ----------------------------------------------------------


def test_the_parameter_list_shows_every_registry_key(admin_client: Client) -> None:
    response = admin_client.get(url("cpusched_parameter_changelist"))

    assert response.status_code == 200
    assert response.context["count"] == len(PARAMS)
    for key in PARAMS:
        assert f">{key}</a>" in page(response)


def test_the_list_shows_value_source_range_unit_and_description(
    admin_client: Client,
) -> None:
    config.apply({"limits.avg_max_usage": "25"})

    response = admin_client.get(url("cpusched_parameter_changelist"))

    rows = dict(
        (param.key, (param, entry))
        for _, group in response.context["groups"]
        for param, entry in group
    )
    param, entry = rows["limits.avg_max_usage"]
    assert (entry.value, entry.source) == (25.0, "database")
    html = page(response)
    assert "a number from 0.1 to 100" in html
    assert "Highest mean CPU over the average window" in html


def test_the_list_filters_by_category(admin_client: Client) -> None:
    response = admin_client.get(
        url("cpusched_parameter_changelist"), {"category": "limits"}
    )

    groups = response.context["groups"]
    assert [name for name, _ in groups] == ["limits"]
    assert response.context["count"] == len(by_category("limits"))


def test_the_list_filters_by_source_and_marks_locked_keys(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPUSCHED_SERVER_PORT", "9000")

    response = admin_client.get(
        url("cpusched_parameter_changelist"), {"source": "environment"}
    )

    assert response.context["count"] == 1
    assert "locked" in page(response)
    assert "CPUSCHED_SERVER_PORT" in page(response)


def test_the_list_searches_keys_and_descriptions(admin_client: Client) -> None:
    response = admin_client.get(url("cpusched_parameter_changelist"), {"q": "webhook"})

    keys = {p.key for _, group in response.context["groups"] for p, _ in group}
    assert keys == {"alerts.notify_webhook", "alerts.webhook_url"}


def test_a_malformed_config_ini_is_shown_instead_of_the_list(
    admin_client: Client, layers: Path
) -> None:
    layers.write_text("no section\n")

    response = admin_client.get(url("cpusched_parameter_changelist"))

    assert response.status_code == 500
    assert "malformed config file: line 1" in page(response)


# -- editing --------------------------------------------------------------------


def test_saving_a_valid_value_stores_it_with_history(admin_client: Client) -> None:
    key_url = url("cpusched_parameter_key", key="limits.avg_max_usage")

    response = admin_client.post(
        key_url, {"limits.avg_max_usage": "25", "reason": "new contract"}
    )

    assert response.status_code == 302
    assert stored() == {"limits.avg_max_usage": "25.0"}
    change = ParameterChange.objects.get()
    assert (change.changed_by, change.reason) == ("admin", "new contract")


def test_an_out_of_range_value_is_refused_with_the_range(
    admin_client: Client,
) -> None:
    key_url = url("cpusched_parameter_key", key="limits.avg_max_usage")

    response = admin_client.post(key_url, {"limits.avg_max_usage": "150"})

    assert response.status_code == 200
    assert response.context["form"].errors["limits.avg_max_usage"] == [
        "'150' is refused: expected a number from 0.1 to 100"
    ]
    assert "Nothing was stored" in page(response)
    assert stored() == {}


def test_a_category_edit_shows_every_problem_and_stores_nothing(
    admin_client: Client,
) -> None:
    data = {p.key: config.to_text(p.default) for p in by_category("scheduler")}
    data.update(
        {
            "scheduler.adjustment_step": "fast",
            "scheduler.smooth_factor": "2",
            "scheduler.emergency_cpu_limit": "50",
            "scheduler.mode": "aggressive",
        }
    )

    response = admin_client.post(
        url("cpusched_parameter_edit", category="scheduler"), data
    )

    errors = response.context["form"].errors
    assert sorted(errors) == [
        "scheduler.adjustment_step",
        "scheduler.emergency_cpu_limit",
        "scheduler.smooth_factor",
    ]
    assert "tier limits" in errors["scheduler.emergency_cpu_limit"][0]
    assert "The change was refused (3 problems); nothing was stored" in texts(response)
    assert stored() == {}


def test_a_category_edit_stores_only_the_changed_values(admin_client: Client) -> None:
    data = {p.key: config.to_text(p.default) for p in by_category("scheduler")}
    data["scheduler.mode"] = "conservative"
    data["scheduler.enabled"] = "false"

    admin_client.post(url("cpusched_parameter_edit", category="scheduler"), data)

    assert stored() == {"scheduler.enabled": "false", "scheduler.mode": "conservative"}
    assert Revision.current("config") == 1


def test_a_locked_key_is_refused_with_the_reason(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CPUSCHED_SERVER_PORT", "9000")
    key_url = url("cpusched_parameter_key", key="server.port")

    response = admin_client.post(key_url, {"server.port": "9001"})

    (error,) = response.context["form"].errors["server.port"]
    assert error == (
        "'9001' is refused: locked: fixed by the environment variable "
        "CPUSCHED_SERVER_PORT; change or remove it there"
    )
    assert stored() == {}


def test_a_key_page_shows_the_keys_history(admin_client: Client) -> None:
    config.apply({"limits.avg_max_usage": "25"}, user="alice", reason="contract")

    response = admin_client.get(
        url("cpusched_parameter_key", key="limits.avg_max_usage")
    )

    assert [c.reason for c in response.context["history"]] == ["contract"]
    assert "alice" in page(response)


def test_an_unknown_key_or_category_is_not_found(admin_client: Client) -> None:
    assert admin_client.get(url("cpusched_parameter_key", key="x.y")).status_code == 404
    missing = url("cpusched_parameter_edit", category="nope")
    assert admin_client.get(missing).status_code == 404


def test_a_user_who_may_only_view_cannot_change(client: Client) -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_parameter"))
    client.force_login(viewer)
    key_url = url("cpusched_parameter_key", key="limits.avg_max_usage")

    listed = client.get(url("cpusched_parameter_changelist"))
    refused = client.post(key_url, {"limits.avg_max_usage": "25"})

    assert listed.status_code == 200
    assert refused.status_code == 403
    assert stored() == {}


# -- export, import, reset ----------------------------------------------------------


def test_export_downloads_the_configuration_as_json(admin_client: Client) -> None:
    config.apply({"limits.avg_max_usage": "25"})

    response = admin_client.get(url("cpusched_parameter_export"))

    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == (
        'attachment; filename="cpusched-config-r1.json"'
    )
    assert json.loads(response.content)["values"]["limits.avg_max_usage"] == 25.0


def upload(data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile("config.json", data, content_type="application/json")


def test_import_applies_a_valid_file(admin_client: Client) -> None:
    data = json.dumps({"values": {"limits.avg_max_usage": 25}}).encode()

    response = admin_client.post(
        url("cpusched_parameter_import"), {"file": upload(data), "reason": "restore"}
    )

    assert response.status_code == 302
    assert stored() == {"limits.avg_max_usage": "25.0"}
    assert ParameterChange.objects.get().reason == "restore"


def test_an_import_with_one_bad_key_changes_nothing(admin_client: Client) -> None:
    data = json.dumps(
        {"limits.avg_max_usage": 25, "scheduler.mode": "warp", "bogus.key": 1}
    ).encode()

    response = admin_client.post(
        url("cpusched_parameter_import"), {"file": upload(data)}
    )

    assert [p.key for p in response.context["problems"]] == [
        "scheduler.mode",
        "bogus.key",
    ]
    assert "Nothing was imported" in page(response)
    assert stored() == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{oops", "not valid JSON"),
        (b"[1]", "expected a JSON object"),
        (b"\xff\xfe", "The file is not UTF-8 text"),
    ],
)
def test_a_malformed_import_file_is_refused_clearly(
    admin_client: Client, data: bytes, message: str
) -> None:
    response = admin_client.post(
        url("cpusched_parameter_import"), {"file": upload(data)}
    )

    assert response.status_code == 200
    assert message in page(response)
    assert stored() == {}


def test_reset_of_one_key_removes_its_stored_value(admin_client: Client) -> None:
    config.apply({"limits.avg_max_usage": "25", "scheduler.mode": "aggressive"})

    admin_client.post(url("cpusched_parameter_reset"), {"key": "limits.avg_max_usage"})

    assert stored() == {"scheduler.mode": "aggressive"}


def test_reset_all_asks_first_then_removes_every_stored_value(
    admin_client: Client,
) -> None:
    config.apply({"limits.avg_max_usage": "25", "scheduler.mode": "aggressive"})

    confirm = admin_client.get(url("cpusched_parameter_reset"), {"all": "1"})
    admin_client.post(url("cpusched_parameter_reset"), {"all": "1", "reason": "clean"})

    assert len(confirm.context["affected"]) == 2
    assert stored() == {}
    assert set(
        ParameterChange.objects.filter(new_value=None).values_list("reason")
    ) == {("clean",)}


# -- history and rollback -------------------------------------------------------------


def test_the_history_is_read_only(admin_client: Client) -> None:
    config.apply({"limits.avg_max_usage": "25"})
    change = ParameterChange.objects.get()

    listed = admin_client.get(url("cpusched_parameterchange_changelist"))
    detail = admin_client.get(url("cpusched_parameterchange_change", change.id))
    posted = admin_client.post(
        url("cpusched_parameterchange_change", change.id), {"new_value": "99"}
    )

    assert listed.status_code == 200
    assert "Roll back to here" in page(listed)
    assert 'name="new_value"' not in page(detail)
    assert posted.status_code == 403
    assert admin_client.get(url("cpusched_parameterchange_add")).status_code == 403
    assert ParameterChange.objects.get().new_value == "25.0"


def test_rollback_shows_the_plan_then_restores_the_values(admin_client: Client) -> None:
    config.apply({"limits.avg_max_usage": "25"})
    first = ParameterChange.objects.get().id
    config.apply({"limits.avg_max_usage": "28", "scheduler.mode": "aggressive"})
    rollback_url = url("cpusched_parameterchange_rollback", first)

    plan = admin_client.get(rollback_url).context["plan"]
    response = admin_client.post(rollback_url, {"reason": "undo"})

    assert plan == [
        ("limits.avg_max_usage", "28.0", "25.0"),
        ("scheduler.mode", "aggressive", None),
    ]
    assert response.status_code == 302
    assert stored() == {"limits.avg_max_usage": "25.0"}
    assert ParameterChange.objects.first().reason == "undo"


def test_a_refused_rollback_says_why(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.apply({"limits.avg_max_usage": "25"})
    first = ParameterChange.objects.get().id
    config.apply({"limits.avg_max_usage": "28"})
    monkeypatch.setenv("CPUSCHED_LIMITS_AVG_MAX_USAGE", "20")

    response = admin_client.post(
        url("cpusched_parameterchange_rollback", first), follow=True
    )

    assert any("CPUSCHED_LIMITS_AVG_MAX_USAGE" in t for t in texts(response))
    assert stored() == {"limits.avg_max_usage": "28.0"}


# -- API keys -----------------------------------------------------------------------


def test_adding_an_api_key_shows_the_secret_once_and_stores_a_hash(
    admin_client: Client, admin_user: User
) -> None:
    response = admin_client.post(
        url("cpusched_apikey_add"), {"name": "backup script", "user": admin_user.pk}
    )

    secret = response.context["secret"]
    key = ApiKey.objects.get()
    assert secret in page(response)
    assert "no-store" in response["Cache-Control"]
    assert key.hashed == apikeys.digest(secret) != secret
    assert secret.startswith(f"cps_{key.prefix}_")
    listing = admin_client.get(url("cpusched_apikey_changelist"))
    detail = admin_client.get(url("cpusched_apikey_change", key.pk))
    assert secret not in page(listing) + page(detail)


def test_a_created_key_checks_and_a_wrong_one_does_not(admin_user: User) -> None:
    key, secret = apikeys.create_key(admin_user, "cron")

    assert apikeys.check_key(secret) == key
    assert apikeys.check_key(secret[:-1] + "x") is None
    assert apikeys.check_key("cps_nothing") is None
    assert apikeys.check_key("") is None
    assert apikeys.check_key(None) is None


def test_a_deactivated_key_no_longer_checks(
    admin_client: Client, admin_user: User
) -> None:
    key, secret = apikeys.create_key(admin_user, "cron")

    admin_client.post(
        url("cpusched_apikey_changelist"),
        {"action": "deactivate", "_selected_action": [key.pk]},
    )

    assert apikeys.check_key(secret) is None


def test_checking_a_key_records_when_it_was_last_used(admin_user: User) -> None:
    key, secret = apikeys.create_key(admin_user, "cron")

    apikeys.check_key(secret)

    key.refresh_from_db()
    assert key.last_used_at is not None


# -- the other models -----------------------------------------------------------------


def make_records() -> Alert:
    now = timezone.now()
    Sample.objects.create(timestamp=now, cpu_usage=12.5)
    SampleAggregate.objects.create(
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        seconds=60,
        cpu_usage=10,
        cpu_max=20,
        peak_seconds=0,
    )
    LiveState.objects.create(updated_at=now, data={"cap": 30})
    Decision.objects.create(timestamp=now, cpu_limit=30, action="decrease")
    Event.objects.create(timestamp=now, kind="start", message="started")
    return Alert.objects.create(
        timestamp=now,
        last_seen=now,
        key="quota.avg",
        alert_type="quota",
        severity="warning",
        message="Average budget low",
    )


@pytest.mark.parametrize(
    "model", ["sample", "sampleaggregate", "livestate", "decision", "event"]
)
def test_system_records_are_listed_and_read_only(
    admin_client: Client, model: str
) -> None:
    make_records()
    app = {"decision": "scheduling", "event": "scheduling"}.get(model, "monitoring")

    listed = admin_client.get(url(f"{app}_{model}_changelist"))
    add = admin_client.get(url(f"{app}_{model}_add"))

    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 1
    assert add.status_code == 403


def test_alerts_can_be_acknowledged_and_resolved(admin_client: Client) -> None:
    alert = make_records()
    changelist = url("alerts_alert_changelist")

    admin_client.post(
        changelist,
        {"action": "acknowledge_selected", "_selected_action": [alert.pk]},
    )
    admin_client.post(
        changelist, {"action": "resolve_selected", "_selected_action": [alert.pk]}
    )

    alert.refresh_from_db()
    assert (alert.acknowledged, alert.acknowledged_by) == (True, "admin")
    assert alert.resolved is True
    assert alert.resolved_at is not None


def test_the_admin_index_links_every_model(admin_client: Client) -> None:
    response = admin_client.get(url("index"))

    html = page(response)
    for name in (
        "cpusched/parameter/",
        "cpusched/parameterchange/",
        "cpusched/apikey/",
        "monitoring/sample/",
        "scheduling/decision/",
        "alerts/alert/",
    ):
        assert f"/admin/{name}" in html
