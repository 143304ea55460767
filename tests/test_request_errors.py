"""A bad configuration file or an oversized body gets a clear answer, not a 500."""

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from cpusched import config
from cpusched.params import PARAMS

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "pw-root-1")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def bad_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in PARAMS:
        monkeypatch.delenv(config.env_name(key), raising=False)
    path = tmp_path / "config.ini"
    path.write_text("[limits]\navg_max_usage = lots\n")
    monkeypatch.setenv("CPUSCHED_CONFIG", str(path))
    return path


def test_the_api_names_the_bad_key_of_a_broken_config_file(client, bad_file):
    response = client.get("/api/config")

    assert response.status_code == 503
    body = response.json()
    assert body["errors"][0]["key"] == "limits.avg_max_usage"
    assert "'lots' is refused: expected a number from 0.1 to 100" in body["detail"]


def test_a_page_explains_a_broken_config_file_instead_of_a_bare_500(client, bad_file):
    response = client.get("/config/")

    assert response.status_code == 503
    assert b"Configuration error" in response.content
    assert b"limits.avg_max_usage" in response.content


def test_health_reports_a_broken_config_file(client, bad_file):
    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["configuration"] == {
        "ok": False,
        "error": "configuration refused for limits.avg_max_usage",
    }


def test_an_oversized_api_body_gets_a_json_413_and_changes_nothing(client):
    body = '{"limits.avg_max_usage": 25, "pad": "' + "x" * 2_000_000 + '"}'

    response = client.put("/api/config", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["detail"].startswith("Request body too large: at most")
    assert config.get("limits.avg_max_usage") == 30.0
