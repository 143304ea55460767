"""Login, API keys, CSRF on the API, session expiry and rate limits."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from cpusched import auth, config
from cpusched.apikeys import create_key
from cpusched.models import Parameter

pytestmark = pytest.mark.django_db

# A CSRF secret in the cookie's format; the header may carry it unmasked.
CSRF = "abcdefghijklmnopqrstuvwxyzABCDEF"


@pytest.fixture
def admin() -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "pw-admin-1")


@pytest.fixture
def secret(admin: User) -> str:
    return create_key(admin, "tests")[1]


@pytest.fixture
def frozen_minute(monkeypatch):
    """Pin the clock 10 s into a minute, so a test never spans two windows."""
    monkeypatch.setattr(auth, "clock", lambda: 1_800_000_010.0)


def put_config(client: Client, body: dict, **headers: str):
    return client.put(
        "/api/config", json.dumps(body), content_type="application/json", **headers
    )


# -- login required -------------------------------------------------------------


def test_a_page_redirects_an_anonymous_visitor_to_the_login_page():
    response = Client().get("/config/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/config/"


def test_the_api_answers_401_json_without_credentials():
    response = Client().get("/api/monitoring/current")

    assert response.status_code == 401
    assert response.json() == {"detail": "Unauthorized"}


def test_the_login_page_and_health_stay_open():
    assert Client().get("/login/").status_code == 200
    assert Client().get("/health").status_code in (200, 503)


def test_a_logged_in_user_reaches_the_api(admin):
    client = Client()
    client.force_login(admin)

    assert client.get("/api/monitoring/current").status_code == 200


def test_everything_is_open_when_authentication_is_switched_off():
    config.apply({"server.auth_enabled": False})

    assert Client().get("/api/monitoring/current").status_code == 200
    assert Client().get("/api/config").status_code == 200
    assert Client().get("/api/docs").status_code == 200


# -- API keys -------------------------------------------------------------------


def test_an_api_key_in_the_header_authenticates(secret):
    response = Client(HTTP_X_API_KEY=secret).get("/api/config")

    assert response.status_code == 200


def test_an_api_key_as_a_bearer_token_authenticates(secret):
    response = Client(HTTP_AUTHORIZATION=f"Bearer {secret}").get("/api/config")

    assert response.status_code == 200


def test_an_invalid_api_key_is_refused_even_on_open_paths(secret, caplog):
    forged = secret[:-4] + "AAAA"

    api = Client(HTTP_X_API_KEY=forged).get("/api/config")
    page = Client(HTTP_X_API_KEY=forged).get("/login/")

    assert api.status_code == 401
    assert api.json()["detail"] == "Invalid or inactive API key in X-API-Key"
    assert page.status_code == 401
    assert "Refused an invalid or inactive API key" in caplog.text


def test_a_deactivated_api_key_is_refused(admin):
    key, secret = create_key(admin, "old")
    key.active = False
    key.save()

    assert Client(HTTP_X_API_KEY=secret).get("/api/config").status_code == 401


def test_an_api_key_opens_pages_too(secret):
    response = Client(HTTP_X_API_KEY=secret).get("/config/")

    assert response.status_code == 200


# -- CSRF on the API --------------------------------------------------------------


def test_a_session_write_without_a_csrf_token_is_refused(admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)

    response = put_config(client, {"limits.avg_max_usage": 25})

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert Parameter.objects.count() == 0


def test_a_session_write_with_the_csrf_token_is_accepted(admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    client.cookies["csrftoken"] = CSRF

    response = put_config(client, {"limits.avg_max_usage": 25}, HTTP_X_CSRFTOKEN=CSRF)

    assert response.status_code == 200
    assert config.get("limits.avg_max_usage") == 25.0


def test_an_api_key_write_needs_no_csrf_token(secret):
    client = Client(enforce_csrf_checks=True, HTTP_X_API_KEY=secret)

    response = put_config(client, {"limits.avg_max_usage": 25})

    assert response.status_code == 200


def test_a_session_read_needs_no_csrf_token(admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)

    assert client.get("/api/config").status_code == 200


# -- sessions ---------------------------------------------------------------------


def test_a_session_lasts_the_configured_timeout_after_each_request(admin):
    config.apply({"server.session_timeout": 5})
    client = Client()
    client.force_login(admin)

    client.get("/api/monitoring/current")

    assert client.session.get_expiry_age() == 300
    expires = Session.objects.get().expire_date
    assert abs((expires - timezone.now()).total_seconds() - 300) < 10


def test_an_expired_session_is_sent_back_to_the_login_page(admin):
    client = Client()
    client.force_login(admin)
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))

    page = client.get("/config/")
    api = client.get("/api/config")

    assert page.status_code == 302
    assert page["Location"].startswith("/login/")
    assert api.status_code == 401


# -- rate limits ------------------------------------------------------------------


def test_the_request_over_the_limit_gets_429_with_retry_after(secret, frozen_minute):
    config.apply({"server.rate_limit_requests": 3})
    client = Client(HTTP_X_API_KEY=secret)

    codes = [client.get("/api/monitoring/current").status_code for _ in range(3)]
    refused = client.get("/api/monitoring/current")

    assert codes == [200, 200, 200]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "50"
    assert refused["X-RateLimit-Remaining"] == "0"
    assert "3 requests per minute" in refused.json()["detail"]


def test_the_limit_counts_each_client_on_its_own(admin, secret, frozen_minute):
    config.apply({"server.rate_limit_requests": 2})
    other = create_key(admin, "other")[1]
    first = Client(HTTP_X_API_KEY=secret)
    for _ in range(3):
        first.get("/api/config")

    response = Client(HTTP_X_API_KEY=other).get("/api/config")

    assert response.status_code == 200
    assert response["X-RateLimit-Remaining"] == "1"


def test_anonymous_clients_are_counted_by_address(frozen_minute):
    config.apply({"server.rate_limit_requests": 2})

    codes = [Client().get("/login/").status_code for _ in range(3)]
    elsewhere = Client(REMOTE_ADDR="10.0.0.9").get("/login/")

    assert codes == [200, 200, 429]
    assert elsewhere.status_code == 200


def test_the_limit_resets_in_the_next_minute(secret, monkeypatch):
    config.apply({"server.rate_limit_requests": 1})
    client = Client(HTTP_X_API_KEY=secret)
    monkeypatch.setattr(auth, "clock", lambda: 1_800_000_010.0)
    client.get("/api/config")
    refused = client.get("/api/config").status_code

    monkeypatch.setattr(auth, "clock", lambda: 1_800_000_070.0)

    assert refused == 429
    assert client.get("/api/config").status_code == 200


def test_rate_limiting_can_be_switched_off(secret, frozen_minute):
    config.apply({"server.rate_limit_requests": 1, "server.rate_limit_enabled": False})
    client = Client(HTTP_X_API_KEY=secret)

    codes = {client.get("/api/config").status_code for _ in range(3)}

    assert codes == {200}


def test_a_logged_out_page_after_login_sees_a_fresh_csrf_cookie(admin):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    client.logout()
    client.force_login(admin)
    client.cookies["csrftoken"] = CSRF

    response = put_config(client, {"limits.avg_max_usage": 26}, HTTP_X_CSRFTOKEN=CSRF)

    assert response.status_code == 200
