"""The OpenAPI description against the implementation, through the ASGI app.

Schemathesis generates requests from /api/openapi.json (valid ones and,
because the schemas bound every field, edge values) and sends them to the
real ASGI application with an API key. No answer may be a 5xx, and every
documented answer must match its schema. Examples per operation are capped
so the whole module runs in well under a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.cache import cache
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from cpusched import config, runtime
from cpusched.api import api
from cpusched.apikeys import create_key
from cpusched.asgi import application

EXAMPLES_PER_OPERATION = 10


@pytest.fixture
def api_key(transactional_db) -> str:
    runtime.forget()
    cache.clear()
    # Generated requests come fast from one key: the limit is tested elsewhere.
    config.apply({"server.rate_limit_enabled": False})
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw-admin-1")
    return create_key(admin, "schemathesis")[1]


def load_schema() -> schemathesis.BaseSchema:
    """The description the API serves, bound to the real ASGI application.

    Read from the API object rather than over HTTP (which needs a key, so a
    database) because schemathesis' fixture-based loader does not work with
    pytest 9; /api/openapi.json serves this same document.
    """
    loaded = schemathesis.openapi.from_dict(api.get_openapi_schema())
    loaded.app = application
    return loaded


schema = load_schema()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_matches_its_openapi_description(case, api_key):
    case.call_and_validate(
        headers={"X-API-Key": api_key},
        checks=[not_a_server_error, response_schema_conformance],
    )
