"""The REST API: live state, downsampled history, configuration, docs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from cpusched import config, runtime
from cpusched.apikeys import create_key
from cpusched.models import Parameter, ParameterChange
from monitoring.models import LiveState, Sample, SampleAggregate

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def admin() -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "pw-admin-1")


@pytest.fixture
def client(admin: User) -> Client:
    _, secret = create_key(admin, "tests")
    return Client(HTTP_X_API_KEY=secret)


def put_json(client: Client, path: str, body: object) -> object:
    return client.put(path, json.dumps(body), content_type="application/json")


def post_json(client: Client, path: str, body: object) -> object:
    return client.post(path, json.dumps(body), content_type="application/json")


def write_live(age_s: float = 0.0, **data: object) -> None:
    LiveState.objects.update_or_create(
        id=1,
        defaults={
            "updated_at": timezone.now() - timedelta(seconds=age_s),
            "data": data,
        },
    )


def store_samples(start: datetime, cpu: list[float], **fields: object) -> None:
    Sample.objects.bulk_create(
        Sample(timestamp=start + timedelta(seconds=i), cpu_usage=value, **fields)
        for i, value in enumerate(cpu)
    )


def history(client: Client, **query: object) -> object:
    return client.get("/api/monitoring/history", query)


def locs(response) -> list[list]:
    return [error["loc"] for error in response.json()["detail"]]


# -- current ------------------------------------------------------------------


def test_current_reports_the_live_state_in_the_design_shape(client):
    write_live(
        cpu_usage=25.5,
        memory_usage=60.2,
        disk_io_read=1024,
        disk_io_write=2048,
        network_in=5120,
        network_out=3072,
        avg_mean=28.3,
        peak_used_s=480,
        peak_remaining_s=120,
        cap=85.0,
        run_time_at_100=3600,
        tier="high",
    )

    body = client.get("/api/monitoring/current").json()

    assert body["cpu_usage"] == 25.5
    assert body["memory_usage"] == 60.2
    assert body["disk_io"] == {"read": 1024, "write": 2048}
    assert body["network"] == {"in": 5120, "out": 3072}
    assert body["window_12h_avg"] == 28.3
    assert body["window_24h_peak"] == 480
    assert body["current_limit"] == 85.0
    assert body["quota_remaining"] == {"avg_quota": 1.7, "peak_quota": 120}
    assert body["quota_status"] == "critical"  # 1.7 points left, critical at 2
    assert body["run_time_at_100"] == 3600
    assert body["scheduler_running"] is True
    assert 0 <= body["heartbeat_age"] < 5


def test_current_without_a_scheduler_answers_nulls_and_not_running(client):
    body = client.get("/api/monitoring/current").json()

    assert body["cpu_usage"] is None
    assert body["timestamp"] is None
    assert body["scheduler_running"] is False
    assert body["heartbeat_age"] is None


def test_current_says_a_stale_heartbeat_is_not_running(client):
    write_live(age_s=30, cpu_usage=10.0)

    body = client.get("/api/monitoring/current").json()

    assert body["scheduler_running"] is False
    assert body["heartbeat_age"] >= 30


def test_current_skips_values_that_are_not_numbers(client):
    write_live(cpu_usage="a lot", cap=True, avg_mean=[1])

    body = client.get("/api/monitoring/current").json()

    assert body["cpu_usage"] is None
    assert body["current_limit"] is None
    assert body["window_12h_avg"] is None


def test_current_reports_an_exhausted_peak_budget(client):
    write_live(avg_mean=10.0, peak_remaining_s=0)

    assert client.get("/api/monitoring/current").json()["quota_status"] == "exhausted"


# -- history ------------------------------------------------------------------


def test_history_averages_each_bucket_of_the_requested_resolution(client):
    store_samples(DAY, [10, 20, 30, 40, 50, 60], cpu_limit=80.0)

    body = history(
        client, start="2026-01-01T00:00:00Z", end="2026-01-01T00:00:06Z", resolution=3
    ).json()

    assert body["resolution"] == 3
    assert body["total"] == 2
    assert [p["cpu_usage"] for p in body["data"]] == [20.0, 50.0]
    assert [p["cpu_max"] for p in body["data"]] == [30.0, 60.0]
    assert [p["samples"] for p in body["data"]] == [3, 3]
    assert body["data"][0]["cpu_limit"] == 80.0
    assert body["data"][1]["timestamp"] == "2026-01-01T00:00:03Z"


def test_history_downsamples_an_hour_to_the_requested_number_of_points(client):
    store_samples(DAY, [float(i % 100) for i in range(3600)])

    body = history(
        client,
        start="2026-01-01T00:00:00Z",
        end="2026-01-01T01:00:00Z",
        max_points=60,
    ).json()

    assert body["resolution"] == 60
    assert body["total"] == 60
    assert len(body["data"]) == 60
    assert all(point["samples"] == 60 for point in body["data"])


def test_history_defaults_to_chart_max_points(client):
    config.apply({"performance.chart_max_points": 100})

    body = history(
        client, start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z"
    ).json()

    assert body["resolution"] == 864
    assert body["total"] == 100


def test_history_leaves_buckets_without_samples_as_gaps(client):
    store_samples(DAY, [50.0])

    body = history(
        client, start="2026-01-01T00:00:00Z", end="2026-01-01T00:00:03Z", resolution=1
    ).json()

    assert [p["samples"] for p in body["data"]] == [1, 0, 0]
    assert body["data"][1]["cpu_usage"] is None


def test_history_counts_peak_seconds_per_bucket(client):
    Sample.objects.bulk_create(
        Sample(timestamp=DAY + timedelta(seconds=i), cpu_usage=99.0, is_peak=i < 4)
        for i in range(10)
    )

    body = history(
        client, start="2026-01-01T00:00:00Z", end="2026-01-01T00:00:10Z", resolution=10
    ).json()

    assert body["data"][0]["peak_seconds"] == 4


def test_history_pages_through_the_buckets(client):
    store_samples(DAY, [float(i) for i in range(10)])
    query = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:10Z"}

    second = history(client, **query, resolution=1, per_page=4, page=2).json()
    past_end = history(client, **query, resolution=1, per_page=4, page=9).json()

    assert second["total"] == 10
    assert [p["cpu_usage"] for p in second["data"]] == [4.0, 5.0, 6.0, 7.0]
    assert past_end["data"] == []
    assert past_end["total"] == 10


def test_history_weights_downsampled_rows_by_their_seconds(client):
    SampleAggregate.objects.create(
        timestamp=DAY, seconds=60, cpu_usage=10.0, cpu_max=20.0, peak_seconds=2
    )
    store_samples(DAY + timedelta(seconds=60), [40.0] * 20)

    body = history(
        client, start="2026-01-01T00:00:00Z", end="2026-01-01T00:02:00Z", resolution=120
    ).json()

    point = body["data"][0]
    assert point["samples"] == 80
    assert point["cpu_usage"] == pytest.approx((10 * 60 + 40 * 20) / 80, abs=0.001)
    assert point["cpu_max"] == 40.0
    assert point["peak_seconds"] == 2


def test_history_serves_settled_buckets_from_the_cache(client):
    store_samples(DAY, [10.0] * 120)
    # An hour of one-minute buckets is one cache chunk.
    query = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}
    first = history(client, **query, resolution=60).json()
    Sample.objects.update(cpu_usage=90.0)

    cached = history(client, **query, resolution=60).json()
    config.apply({"performance.cache_enabled": False})
    runtime.forget()
    fresh = history(client, **query, resolution=60).json()

    assert [p["cpu_usage"] for p in first["data"][:3]] == [10.0, 10.0, None]
    assert cached["data"] == first["data"]
    assert [p["cpu_usage"] for p in fresh["data"][:2]] == [90.0, 90.0]


def test_history_never_caches_buckets_still_being_written(client):
    now = timezone.now().replace(microsecond=0)
    store_samples(now - timedelta(seconds=3), [10.0])
    query = {"hours": 1, "resolution": 60}
    before = history(client, **query).json()["data"][-1]

    store_samples(now - timedelta(seconds=2), [30.0])
    after = history(client, **query).json()["data"][-1]

    assert before["samples"] == 1
    assert (after["samples"], after["cpu_usage"]) == (2, 20.0)


def test_history_refuses_an_end_before_the_start(client):
    response = history(client, start="2026-01-02T00:00:00Z", end="2026-01-01T00:00:00Z")

    assert response.status_code == 422
    assert locs(response) == [["query", "end"]]


def test_history_refuses_a_range_of_more_than_a_year(client):
    response = history(client, start="2020-01-01T00:00:00Z", end="2026-01-01T00:00:00Z")

    assert response.status_code == 422
    assert locs(response) == [["query", "start"]]
    assert "367 days" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    "query, field",
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-13-45T00:00:00"}, "end"),
        ({"resolution": 0}, "resolution"),
        ({"resolution": "fast"}, "resolution"),
        ({"per_page": 100000}, "per_page"),
        ({"page": 0}, "page"),
        ({"hours": -1}, "hours"),
        ({"max_points": 2}, "max_points"),
    ],
)
def test_history_names_the_bad_query_field(client, query, field):
    response = history(client, **query)

    assert response.status_code == 422
    assert ["query", field] in locs(response)


def test_history_refuses_a_range_beyond_the_year_9999(client):
    response = history(client, end="9999-12-31T23:00:00-10:00", hours=2)

    assert response.status_code == 422


# -- configuration ------------------------------------------------------------


def test_config_lists_every_parameter_with_source_lock_type_and_range(
    client, monkeypatch
):
    monkeypatch.setenv("CPUSCHED_LIMITS_PEAK_THRESHOLD", "90")

    body = client.get("/api/config").json()

    assert set(body["values"]) == set(config.PARAMS)
    avg = body["parameters"]["limits.avg_max_usage"]
    assert avg["value"] == 30.0
    assert avg["source"] == "default"
    assert avg["locked"] is False
    assert (avg["type"], avg["min"], avg["max"]) == ("float", 0.1, 100)
    peak = body["parameters"]["limits.peak_threshold"]
    assert (peak["value"], peak["source"]) == (90.0, "environment")
    assert peak["locked"] is True
    assert body["parameters"]["scheduler.mode"]["choices"] == [
        "conservative",
        "balanced",
        "aggressive",
    ]


def test_put_config_stores_valid_values_with_history(client):
    before = config.current_revision()

    response = put_json(
        client, "/api/config?reason=more+room", {"limits.avg_max_usage": 35}
    )

    assert response.status_code == 200
    assert response.json()["changed"] == {"limits.avg_max_usage": 35.0}
    assert response.json()["revision"] == before + 1
    assert config.get("limits.avg_max_usage") == 35.0
    change = ParameterChange.objects.get()
    assert (change.changed_by, change.reason) == ("admin", "more room")


@pytest.mark.parametrize(
    "body, key",
    [
        ({"limits.avg_max_usage": 500}, "limits.avg_max_usage"),
        ({"limits.avg_max_usage": "lots"}, "limits.avg_max_usage"),
        ({"scheduler.mode": "turbo"}, "scheduler.mode"),
        ({"no.such_key": 1}, "no.such_key"),
        ({"limits.avg_min_usage": 50}, "limits.avg_min_usage"),
    ],
)
def test_put_config_refuses_bad_values_naming_the_key_and_stores_nothing(
    client, body, key
):
    response = put_json(client, "/api/config", body)

    assert response.status_code == 422
    assert ["body", key] in locs(response)
    assert Parameter.objects.count() == 0
    assert config.current_revision() == 0


def test_put_config_refuses_all_when_one_value_is_bad(client):
    response = put_json(
        client,
        "/api/config",
        {"limits.avg_max_usage": 25, "limits.peak_threshold": 101},
    )

    assert response.status_code == 422
    assert locs(response) == [["body", "limits.peak_threshold"]]
    assert config.get("limits.avg_max_usage") == 30.0


def test_put_config_refuses_a_key_locked_by_the_environment(client, monkeypatch):
    monkeypatch.setenv("CPUSCHED_LIMITS_PEAK_THRESHOLD", "90")

    response = put_json(client, "/api/config", {"limits.peak_threshold": 80})

    assert response.status_code == 422
    assert "CPUSCHED_LIMITS_PEAK_THRESHOLD" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    "raw, status",
    [
        ("{not json", 400),
        ("[1, 2]", 422),
        ('{"limits.avg_max_usage": null}', 422),
        ('{"limits.avg_max_usage": [30]}', 422),
        ('"text"', 422),
    ],
)
def test_put_config_refuses_malformed_bodies(client, raw, status):
    response = client.put("/api/config", raw, content_type="application/json")

    assert response.status_code == status
    assert Parameter.objects.count() == 0


def test_put_config_refuses_a_huge_body_without_a_server_error(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {f"key{i}": "x" * 100 for i in range(200)}

    response = put_json(client, "/api/config", body)

    assert response.status_code == 413
    assert response.json()["detail"] == (
        "Request body too large: at most 10000 bytes are accepted"
    )
    assert Parameter.objects.count() == 0


def test_put_config_needs_the_change_parameter_permission(admin):
    viewer = User.objects.create_user("viewer", password="pw-viewer-1")
    _, secret = create_key(viewer, "viewer")

    response = put_json(
        Client(HTTP_X_API_KEY=secret), "/api/config", {"limits.avg_max_usage": 25}
    )

    assert response.status_code == 403
    assert Parameter.objects.count() == 0


def test_put_config_is_allowed_with_the_permission(admin):
    operator = User.objects.create_user("operator", password="pw-operator-1")
    operator.user_permissions.add(Permission.objects.get(codename="change_parameter"))
    _, secret = create_key(operator, "operator")

    response = put_json(
        Client(HTTP_X_API_KEY=secret), "/api/config", {"limits.avg_max_usage": 25}
    )

    assert response.status_code == 200


def test_history_rollback_and_reset_round_trip(client):
    put_json(client, "/api/config", {"limits.avg_max_usage": 25})
    first = ParameterChange.objects.get().id
    put_json(client, "/api/config", {"limits.avg_max_usage": 20})

    entries = client.get("/api/config/history").json()
    rolled = post_json(client, "/api/config/rollback", {"change_id": first})
    after_rollback = config.get("limits.avg_max_usage")
    reset = post_json(client, "/api/config/reset", {"keys": ["limits.avg_max_usage"]})

    assert entries["total"] == 2
    assert entries["data"][0]["new_value"] == "20.0"
    assert rolled.status_code == 200
    assert after_rollback == 25.0
    assert reset.status_code == 200
    assert config.get("limits.avg_max_usage") == 30.0


def test_rollback_to_an_unknown_change_names_it(client):
    response = post_json(client, "/api/config/rollback", {"change_id": 999})

    assert response.status_code == 422
    assert locs(response) == [["body", "change"]]


def test_reset_of_an_unknown_key_names_it(client):
    response = post_json(client, "/api/config/reset", {"keys": ["no.such"]})

    assert response.status_code == 422
    assert locs(response) == [["body", "no.such"]]


def test_export_then_import_restores_the_values(client):
    put_json(client, "/api/config", {"limits.avg_max_usage": 25})
    exported = client.get("/api/config/export").json()
    put_json(client, "/api/config", {"limits.avg_max_usage": 20})

    response = post_json(client, "/api/config/import", exported)

    assert response.status_code == 200
    assert exported["format"] == "cpusched-config"
    assert config.get("limits.avg_max_usage") == 25.0


def test_import_refuses_a_bad_file_naming_the_key(client):
    response = post_json(
        client, "/api/config/import", {"values": {"limits.avg_max_usage": -1}}
    )

    assert response.status_code == 422
    assert locs(response) == [["body", "limits.avg_max_usage"]]
    assert Parameter.objects.count() == 0


# -- description and docs -----------------------------------------------------


def test_openapi_describes_the_design_paths_and_the_api_key(client):
    schema = client.get("/api/openapi.json").json()

    for path in ("/api/monitoring/current", "/api/monitoring/history", "/api/config"):
        assert path in schema["paths"]
    assert "put" in schema["paths"]["/api/config"]
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiAuth"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}


def test_docs_are_served_from_local_static_files(client):
    page = client.get("/api/docs").content.decode()

    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()


def test_docs_need_a_login_when_authentication_is_on(db):
    response = Client().get("/api/docs")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
