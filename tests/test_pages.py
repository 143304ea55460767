"""The dashboard, configuration and alerts pages through Django's test client."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from alerts.models import Alert
from cpusched import config
from cpusched.models import Parameter, ParameterChange
from monitoring.models import LiveState

pytestmark = pytest.mark.django_db

PAGES = [
    "/",
    "/config/",
    "/alerts/",
    "/alerts/table/",
    "/alerts/count/",
    "/config/history/",
    "/config/export/",
    "/dashboard/resources/?range=6h",
]
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def user(db) -> User:
    return User.objects.create_user("operator", password="pw-for-pages-9")


@pytest.fixture
def client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def save(client: Client, category: str, **values: str):
    data = {
        "category": category,
        **{k.replace("__", "."): v for k, v in values.items()},
    }
    return client.post("/config/save/", data, **HTMX)


def alert(message: str, severity: str = "warning", **fields) -> Alert:
    now = timezone.now()
    return Alert.objects.create(
        key=fields.pop("key", "test"),
        alert_type="system",
        severity=severity,
        message=message,
        timestamp=now,
        last_seen=now,
        **fields,
    )


@pytest.mark.parametrize("url", PAGES)
def test_each_page_renders_for_a_signed_in_user(client, url):
    response = client.get(url)

    assert response.status_code == 200


@pytest.mark.parametrize("url", PAGES)
def test_each_page_sends_a_signed_out_visitor_to_the_login_page(url):
    response = Client().get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_pages_are_open_when_authentication_is_switched_off(monkeypatch):
    monkeypatch.setenv("CPUSCHED_SERVER_AUTH_ENABLED", "false")

    response = Client().get("/config/")

    assert response.status_code == 200
    assert "authentication off" in response.content.decode()


def test_the_login_page_signs_a_user_in(user):
    client = Client()

    response = client.post(
        "/login/", {"username": "operator", "password": "pw-for-pages-9"}
    )

    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_the_login_page_says_when_the_password_is_wrong(user):
    response = Client().post("/login/", {"username": "operator", "password": "nope"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_the_navigation_links_every_area(client):
    html = client.get("/").content.decode()

    for link in (
        'href="/"',
        'href="/config/"',
        'href="/reservations/"',
        'href="/alerts/"',
        'href="/admin/"',
        'href="/api/docs"',
    ):
        assert link in html
    assert 'action="/logout/"' in html


def test_the_dashboard_shows_the_live_figures(client):
    LiveState.objects.create(
        id=1,
        updated_at=timezone.now(),
        data={"cpu_usage": 42.5, "cap": 61.0, "avg_mean": 21.0, "peak_remaining_s": 75},
    )

    html = client.get("/").content.decode()

    assert ">42.5 %<" in html
    assert ">61.0 %<" in html
    assert ">75 s<" in html
    assert ">running<" in html


def test_the_dashboard_says_the_scheduler_is_not_running_on_a_stale_heartbeat(client):
    stale = timezone.now() - timedelta(seconds=30)
    LiveState.objects.create(id=1, updated_at=stale, data={"cpu_usage": 10.0})

    html = client.get("/").content.decode()

    assert "scheduler not running" in html
    assert "30 s ago" in html


def test_the_dashboard_says_the_scheduler_is_not_running_without_a_live_state(client):
    html = client.get("/").content.decode()

    assert "scheduler not running" in html
    assert "never" in html


def test_the_resource_panel_refuses_an_unknown_range(client):
    response = client.get("/dashboard/resources/?range=7d")

    assert response.status_code == 400
    assert b"range='7d' is not allowed" in response.content


def test_the_configuration_page_shows_every_parameter_by_category(client):
    html = client.get("/config/").content.decode()

    for key in config.PARAMS:
        assert f'name="{key}"' in html
    assert html.index('id="card-limits"') < html.index('id="card-scheduler"')


def test_saving_an_out_of_range_value_shows_the_message_and_stores_nothing(client):
    response = save(client, "limits", limits__avg_max_usage="150")

    html = response.content.decode()
    assert "expected a number from 0.1 to 100" in html
    assert "Not saved" in html
    assert 'value="150"' in html
    assert not Parameter.objects.exists()
    assert config.get("limits.avg_max_usage") == 30.0


def test_saving_a_valid_value_stores_it_with_the_user_and_reason(client):
    response = save(client, "limits", limits__avg_max_usage="35", reason="new plan")

    assert response.status_code == 200
    assert "Saved limits.avg_max_usage" in response.content.decode()
    assert response["HX-Trigger"] == "config-changed"
    assert config.get("limits.avg_max_usage") == 35.0
    change = ParameterChange.objects.get()
    assert (change.changed_by, change.reason) == ("operator", "new plan")


def test_saving_an_untouched_form_stores_nothing(client):
    values = {
        p.key: config.to_text(p.default)
        for p in config.PARAMS.values()
        if p.category == "limits"
    }
    values["limits.avg_max_usage"] = "30"

    response = client.post("/config/save/", {"category": "limits", **values}, **HTMX)

    assert "Nothing changed" in response.content.decode()
    assert not Parameter.objects.exists()


def test_saving_without_htmx_redirects_with_a_message(client):
    response = client.post(
        "/config/save/",
        {"category": "limits", "limits.avg_max_usage": "35"},
        follow=True,
    )

    assert response.redirect_chain == [("/config/", 302)]
    assert "Saved limits.avg_max_usage" in response.content.decode()


def test_live_validation_shows_the_problem_under_the_field(client):
    response = client.post(
        "/config/validate/",
        {"category": "limits", "limits.avg_max_usage": "abc"},
        **HTMX,
    )

    html = response.content.decode()
    assert 'id="fb-p-limits-avg-max-usage" hx-swap-oob="true"' in html
    assert "&#x27;abc&#x27; is refused: expected a number from 0.1 to 100" in html
    assert not Parameter.objects.exists()


def test_live_validation_checks_relations_against_the_effective_values(client):
    response = client.post(
        "/config/validate/",
        {"category": "limits", "limits.avg_min_usage": "40"},
        **HTMX,
    )

    assert "must be below limits.avg_max_usage" in response.content.decode()


def test_live_validation_confirms_a_good_change(client):
    response = client.post(
        "/config/validate/",
        {"category": "scheduler", "scheduler.mode": "aggressive"},
        **HTMX,
    )

    assert "OK, changed from balanced" in response.content.decode()


def test_an_unknown_category_is_refused_with_a_400(client):
    response = client.post("/config/validate/", {"category": "nope"}, **HTMX)

    assert response.status_code == 400
    assert b"category='nope' is not allowed" in response.content


def test_a_locked_parameter_is_disabled_and_says_why(client, monkeypatch):
    monkeypatch.setenv("CPUSCHED_LIMITS_AVG_MAX_USAGE", "25")

    html = client.get("/config/").content.decode()

    row = html[html.index('id="row-p-limits-avg-max-usage"') :]
    row = row[: row.index('class="param-row')]
    assert "disabled" in row
    assert "Set by the environment variable CPUSCHED_LIMITS_AVG_MAX_USAGE" in row


def test_a_switch_posts_false_when_unchecked(client):
    response = save(client, "monitoring", monitoring__enable_disk="false")

    assert "Saved monitoring.enable_disk" in response.content.decode()
    assert config.get("monitoring.enable_disk") is False


def test_rollback_returns_to_the_state_after_a_change(client):
    save(client, "limits", limits__avg_max_usage="35")
    first = ParameterChange.objects.get()
    save(client, "limits", limits__avg_max_usage="40")

    response = client.post(f"/config/rollback/{first.id}/", **HTMX)

    assert response.status_code == 204
    assert response["HX-Redirect"].endswith("/config/")
    assert config.get("limits.avg_max_usage") == 35.0


def test_rollback_to_a_missing_entry_says_so(client):
    response = client.post("/config/rollback/999/", **HTMX)

    assert response["HX-Retarget"] == "#config-alerts"
    assert "no such history entry" in response.content.decode()


def test_reset_of_one_key_returns_it_to_the_default(client):
    save(client, "limits", limits__avg_max_usage="35", limits__peak_max_duration="500")

    client.post("/config/reset/", {"key": "limits.avg_max_usage"}, **HTMX)

    assert config.get("limits.avg_max_usage") == 30.0
    assert config.get("limits.peak_max_duration") == 500


def test_reset_of_everything_removes_every_stored_value(client):
    save(client, "limits", limits__avg_max_usage="35", limits__peak_max_duration="500")

    client.post("/config/reset/", **HTMX)

    assert not Parameter.objects.exists()


def test_export_downloads_the_effective_configuration(client):
    save(client, "limits", limits__avg_max_usage="35")

    response = client.get("/config/export/")

    assert response["Content-Disposition"].startswith("attachment; filename=")
    body = json.loads(response.content)
    assert body["values"]["limits.avg_max_usage"] == 35.0
    assert body["sources"]["limits.avg_max_usage"] == "database"


def test_import_applies_an_exported_file(client):
    upload = SimpleUploadedFile(
        "c.json", json.dumps({"limits.avg_max_usage": 33}).encode()
    )

    response = client.post("/config/import/", {"file": upload}, follow=True)

    assert "Imported 1 values" in response.content.decode()
    assert config.get("limits.avg_max_usage") == 33.0


def test_import_with_one_bad_value_stores_nothing(client):
    text = json.dumps({"limits.avg_max_usage": 33, "limits.peak_threshold": 500})
    upload = SimpleUploadedFile("c.json", text.encode())

    response = client.post("/config/import/", {"file": upload}, follow=True)

    html = response.content.decode()
    assert "Import refused: limits.peak_threshold: 500 is refused" in html
    assert not Parameter.objects.exists()


def test_import_of_malformed_json_says_so(client):
    upload = SimpleUploadedFile("c.json", b"{not json")

    response = client.post("/config/import/", {"file": upload}, follow=True)

    assert "not valid JSON" in response.content.decode()


def test_forms_and_htmx_requests_need_the_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/config/")
    token = client.cookies["csrftoken"].value
    data = {"category": "limits", "limits.avg_max_usage": "35"}

    refused = client.post("/config/save/", data, **HTMX)
    accepted = client.post("/config/save/", data, HTTP_X_CSRFTOKEN=token, **HTMX)

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert config.get("limits.avg_max_usage") == 35.0


def test_every_page_carries_the_csrf_token_for_htmx(client):
    html = client.get("/alerts/").content.decode()

    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert 'name="csrf-token"' in html


def test_a_hostile_alert_message_is_escaped(client):
    alert("<script>alert('x')</script> & more")

    for url in ("/alerts/", "/alerts/table/"):
        html = client.get(url).content.decode()
        assert "<script>alert(" not in html
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html


def test_a_hostile_parameter_value_is_escaped(client):
    config.apply({"alerts.email_to": '"><script>alert(1)</script>'})

    html = client.get("/config/").content.decode()

    assert "<script>alert(1)</script>" not in html
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html


def test_a_hostile_live_state_name_reaches_scripts_as_json_only(client):
    LiveState.objects.create(
        id=1, updated_at=timezone.now(), data={"reservation": "</script><b>x</b>"}
    )

    html = client.get("/").content.decode()

    assert "</script><b>x</b>" not in html
    assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in html
    assert "\\u003C/script\\u003E\\u003Cb\\u003Ex" in html


def test_acknowledging_an_alert_answers_with_the_updated_row(client):
    open_alert = alert("Average budget low")

    response = client.post(f"/alerts/{open_alert.pk}/acknowledge/", **HTMX)

    open_alert.refresh_from_db()
    assert open_alert.acknowledged is True
    assert open_alert.acknowledged_by == "operator"
    assert "acknowledged by operator" in response.content.decode()
    assert response["HX-Trigger"] == "alerts-changed"


def test_acknowledging_needs_a_post(client):
    open_alert = alert("Average budget low")

    response = client.get(f"/alerts/{open_alert.pk}/acknowledge/")

    assert response.status_code == 405


def test_the_alerts_page_filters_by_state_and_severity(client):
    alert("open warning", key="a")
    alert("resolved one", severity="critical", key="b", resolved=True)

    active = client.get("/alerts/").content.decode()
    resolved = client.get("/alerts/?state=resolved&severity=critical").content.decode()

    assert "open warning" in active and "resolved one" not in active
    assert "resolved one" in resolved and "open warning" not in resolved


def test_the_navigation_badge_counts_unacknowledged_open_alerts(client):
    alert("one", key="a")
    alert("two", key="b", acknowledged=True)

    response = client.get("/alerts/count/")

    assert ">1</span>" in response.content.decode()
