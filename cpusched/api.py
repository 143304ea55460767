"""The REST API (django-ninja), mounted at /api/ with docs at /api/docs.

Every endpoint needs an API key (``X-API-Key``) or a logged-in session
(:class:`cpusched.auth.ApiAuth`) unless ``server.auth_enabled`` is off. The
interactive docs are rendered from ninja's own static files (no CDN); they
and the OpenAPI description need a login too when authentication is on.
"""

from __future__ import annotations

import importlib.util

from ninja import NinjaAPI

from cpusched.auth import api_auth, login_required

DESCRIPTION = """\
Live and historical measurements, the configuration and reservations of one
cpusched instance. Authenticate with an API key (created in the admin) in the
`X-API-Key` header, or with a logged-in session plus the `X-CSRFToken` header
on writes. Requests are limited to `server.rate_limit_requests` per minute per
client (429 with `Retry-After` beyond). Errors are JSON objects with a
`detail` field; validation errors list each bad field in `detail[].loc`.
"""


api = NinjaAPI(
    title="cpusched",
    version="1",
    description=DESCRIPTION,
    docs_url="/docs",
    docs_decorator=login_required,
    auth=api_auth,
)

api.add_router("/monitoring", "monitoring.api.router")
api.add_router("/config", "cpusched.api_config.router")

# The reservations API arrives with its app; mount it when it is there.
if importlib.util.find_spec("reservations.api") is not None:
    api.add_router("/reservations", "reservations.api.router")
