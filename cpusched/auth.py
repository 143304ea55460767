"""Who may use the web process: login, API keys, session expiry, rate limits.

:class:`AccessMiddleware` runs after Django's authentication middleware, on
every HTTP request:

1. an ``X-API-Key`` header (or ``Authorization: Bearer <key>``) is checked
   with :func:`cpusched.apikeys.check_key`; a valid key makes its user the
   request's user and exempts the request from CSRF (a browser never sends
   that header by itself, so it cannot be forged cross-site); an invalid key
   is refused with 401 at once, whatever the path;
2. the client (key, user or address) is counted against
   ``server.rate_limit_requests`` per minute when ``server.rate_limit_enabled``;
   over the limit it gets 429 with ``Retry-After``;
3. with ``server.auth_enabled`` (the default) pages need a logged-in user and
   redirect to the login page; ``/api/`` is guarded by :class:`ApiAuth`
   (401 JSON, CSRF checked for session users); ``/metrics`` needs a user or a
   key unless ``server.metrics_public``; ``/health``, static files, the login
   page and the admin (which has its own login) stay open;
4. a session lives ``server.session_timeout`` minutes after its last request.

The rate limit counts in Django's cache. The default local-memory cache is
per process: with several web workers each counts on its own (configure a
shared cache to count across them). Clients behind one proxy without a key
or login share the proxy's address; forwarded-for headers are not trusted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import SplitResult, urlsplit

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import is_same_domain, validate_host
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch
from ninja.errors import HttpError
from ninja.security import APIKeyHeader
from ninja.utils import check_csrf

from cpusched import runtime

logger = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"

# Paths never counted nor guarded: monitors and static assets.
UNCOUNTED = ("/health", "/static/", "/favicon.ico")

# Paths that need no login here: the admin has its own (staff only).
UNGUARDED = (*UNCOUNTED, "/admin/")

# Counted per fixed minute; a window's counter expires a little after it ends.
RATE_WINDOW_S = 60


def clock() -> float:
    """Wall-clock seconds; rate-limit windows are aligned to whole minutes."""
    return time.time()


def api_key_secret(request: HttpRequest) -> str | None:
    """The key a client sent, from ``X-API-Key`` or a Bearer authorization."""
    secret = request.headers.get(API_KEY_HEADER)
    if secret:
        return secret
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def authenticate_key(secret: str) -> Any:
    """The ApiKey for ``secret``, or None."""
    from cpusched.apikeys import check_key

    return check_key(secret)


class AccessMiddleware:
    """API keys, rate limits, login enforcement and session expiry."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        params = runtime.params()

        refused = self._accept_key(request)
        if refused is not None:
            return refused

        limit = self._rate_limit(request, params)
        if limit.refused is not None:
            return limit.refused

        refused = self._require_login(request, params)
        if refused is not None:
            return refused

        self._extend_session(request, params)
        response = self.get_response(request)
        limit.annotate(response)
        return response

    def _accept_key(self, request: HttpRequest) -> HttpResponse | None:
        request.api_key = None  # type: ignore[attr-defined]
        secret = api_key_secret(request)
        if secret is None:
            return None

        key = authenticate_key(secret)
        if key is None:
            logger.warning(
                "Refused an invalid or inactive API key from %s for %s",
                client_address(request),
                request.path,
            )
            return JsonResponse(
                {"detail": "Invalid or inactive API key in X-API-Key"}, status=401
            )
        request.api_key = key  # type: ignore[attr-defined]
        request.user = key.user
        request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        return None

    def _rate_limit(self, request: HttpRequest, params: Any) -> RateLimit:
        if not params["server.rate_limit_enabled"] or request.path.startswith(
            UNCOUNTED
        ):
            return RateLimit()
        return RateLimit.count(
            client_id(request), params["server.rate_limit_requests"], request
        )

    def _require_login(self, request: HttpRequest, params: Any) -> HttpResponse | None:
        if not params["server.auth_enabled"]:
            return None
        path = request.path
        if request.user.is_authenticated or path.startswith(UNGUARDED):
            return None
        if path.startswith("/api/"):  # ApiAuth answers with 401, not a redirect
            return None
        if path == login_path():
            return None
        if path == "/metrics":
            if params["server.metrics_public"]:
                return None
            return HttpResponse(
                "Authentication required: log in or send an API key in X-API-Key\n",
                status=401,
                content_type="text/plain",
            )
        return redirect_to_login(request.get_full_path(), login_path())

    def _extend_session(self, request: HttpRequest, params: Any) -> None:
        # settings.SESSION_COOKIE_AGE holds the timeout at startup; storing it
        # in the session applies a changed timeout from the next request on.
        key = getattr(request, "api_key", None)
        if key is not None or not request.user.is_authenticated:
            return
        seconds = params["server.session_timeout"] * 60
        if request.session.get("_session_expiry") != seconds:
            request.session.set_expiry(seconds)


def login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Django's ``login_required`` that honours ``server.auth_enabled``.

    :class:`AccessMiddleware` already guards every page; views may add this
    for defence in depth. Django's own decorator would keep asking for a
    login after an operator switched authentication off.
    """

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if runtime.params()["server.auth_enabled"] and not (
            request.user.is_authenticated
        ):
            return redirect_to_login(request.get_full_path(), login_path())
        return view(request, *args, **kwargs)

    return guarded


def login_path() -> str:
    try:
        return resolve_url(settings.LOGIN_URL)
    except NoReverseMatch:
        return "/admin/login/"


def client_address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def client_id(request: HttpRequest) -> str:
    """Whom a request is counted against: its key, its user or its address."""
    key = getattr(request, "api_key", None)
    if key is not None:
        return f"key:{key.pk}"
    if request.user.is_authenticated:
        return f"user:{request.user.pk}"
    return f"ip:{client_address(request)}"


class RateLimit:
    """The outcome of counting one request: headers to add, or a 429."""

    def __init__(self, limit: int = 0, used: int = 0, reset_s: int = 0):
        self.limit = limit
        self.used = used
        self.reset_s = reset_s
        self.refused: HttpResponse | None = None

    @classmethod
    def count(cls, client: str, limit: int, request: HttpRequest) -> RateLimit:
        now = clock()
        window = int(now // RATE_WINDOW_S)
        key = f"ratelimit:{client}:{window}"
        cache.add(key, 0, timeout=RATE_WINDOW_S + 5)
        try:
            used = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=RATE_WINDOW_S + 5)
            used = 1
        reset_s = max(1, math.ceil((window + 1) * RATE_WINDOW_S - now))
        result = cls(limit, used, reset_s)
        if used > limit:
            result.refused = result._too_many(client, request)
        return result

    def _too_many(self, client: str, request: HttpRequest) -> HttpResponse:
        if self.used == self.limit + 1:
            logger.warning(
                "Rate limit of %d requests per minute reached by %s (%s); "
                "refusing for %d s",
                self.limit,
                client,
                client_address(request),
                self.reset_s,
            )
        message = (
            f"Rate limit of {self.limit} requests per minute exceeded; "
            f"retry in {self.reset_s} s"
        )
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse({"detail": message}, status=429)
        else:
            response = HttpResponse(message, status=429, content_type="text/plain")
        self.annotate(response)
        response["Retry-After"] = str(self.reset_s)
        return response

    def annotate(self, response: HttpResponse) -> None:
        if not self.limit:
            return
        response["X-RateLimit-Limit"] = str(self.limit)
        response["X-RateLimit-Remaining"] = str(max(0, self.limit - self.used))


class ApiAuth(APIKeyHeader):
    """The REST API's guard: an API key, or a session with a CSRF token.

    Declared in the OpenAPI description as the ``X-API-Key`` header. Keys are
    checked by :class:`AccessMiddleware` before the API sees the request.
    Sessions must send ``X-CSRFToken`` on unsafe methods. With
    ``server.auth_enabled`` off every request passes (still CSRF-checked when
    it comes with a session).
    """

    param_name = API_KEY_HEADER
    csrf = True  # tells the interactive docs to send the CSRF token

    def __call__(self, request: HttpRequest) -> Any:
        key = getattr(request, "api_key", None)
        if key is not None:
            return key.user

        if request.user.is_authenticated:
            self._check_csrf(request)
            return request.user

        if not runtime.params()["server.auth_enabled"]:
            return "anonymous"
        return None

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        return None  # keys are resolved by AccessMiddleware

    def _check_csrf(self, request: HttpRequest) -> None:
        if getattr(request, "_ninja_csrf_exempt", False):
            return
        if check_csrf(request) is not None:
            raise HttpError(
                403,
                "CSRF check failed: send the csrftoken cookie's value in the "
                "X-CSRFToken header, or use an API key",
            )


api_auth = ApiAuth()


# -- WebSockets ---------------------------------------------------------------

# In server.allowed_origins, this word allows clients that send no Origin
# (scripts; every browser sends one, so the gate against cross-site use stays).
NO_ORIGIN = "none"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _scope_client(scope: dict[str, Any]) -> str:
    client = scope.get("client") or ("unknown", 0)
    return str(client[0])


def extra_origins(params: Any) -> list[str]:
    raw = params["server.allowed_origins"]
    return [item.strip() for item in raw.split(",") if item.strip()]


def origin_refusal(origin: str | None, params: Any) -> str | None:
    """Why a socket from ``origin`` must be refused, or None when allowed.

    Allowed: an origin whose host is in ALLOWED_HOSTS, an origin listed in
    CSRF_TRUSTED_ORIGINS or ``server.allowed_origins`` (``https://*.example``
    wildcards as Django reads them, ``*`` for any), and no Origin header only
    when ``server.allowed_origins`` lists ``none``.
    """
    extras = extra_origins(params)
    if origin is None:
        if NO_ORIGIN in (item.lower() for item in extras):
            return None
        return (
            "no Origin header (list 'none' in server.allowed_origins to allow "
            "clients that send none)"
        )
    if "*" in extras or origin in extras:
        return None

    parsed = urlsplit(origin)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"malformed Origin {origin!r}"
    if _listed(parsed, [*settings.CSRF_TRUSTED_ORIGINS, *extras]):
        return None
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    if validate_host(host, settings.ALLOWED_HOSTS):
        return None
    return (
        f"Origin {origin!r} is not allowed (not in ALLOWED_HOSTS, "
        "CSRF_TRUSTED_ORIGINS nor server.allowed_origins)"
    )


def _listed(origin: SplitResult, entries: list[str]) -> bool:
    for entry in entries:
        wanted = urlsplit(entry)
        if wanted.scheme != origin.scheme:
            continue
        if wanted.netloc == origin.netloc:
            return True
        if wanted.netloc.startswith("*") and is_same_domain(
            origin.netloc, wanted.netloc[1:]
        ):
            return True
    return False


class OriginGuard:
    """ASGI middleware: refuse sockets from origins this site does not serve."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            params = runtime.cached() or await database_sync_to_async(runtime.params)()
            reason = origin_refusal(_header(scope, b"origin"), params)
            if reason is not None:
                return await _deny(scope, receive, send, "origin", reason)
        return await self.app(scope, receive, send)


class ApiKeyScope:
    """ASGI middleware: a valid ``X-API-Key`` makes its user the scope's user.

    Placed inside Channels' AuthMiddlewareStack, so a key wins over a session
    cookie; an invalid key refuses the socket.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        secret = _header(scope, b"x-api-key")
        if secret is None:
            scheme, _, value = (_header(scope, b"authorization") or "").partition(" ")
            secret = value.strip() if scheme.lower() == "bearer" else None
        if secret:
            key = await database_sync_to_async(authenticate_key)(secret)
            if key is None:
                reason = "invalid or inactive API key"
                return await _deny(scope, receive, send, "unauthenticated", reason)
            scope = {**scope, "user": key.user, "api_key": key}
        return await self.app(scope, receive, send)


async def _deny(scope: Any, receive: Any, send: Any, kind: str, reason: str) -> Any:
    from monitoring.broadcaster import broadcaster

    broadcaster.stats.refused[kind] += 1
    logger.warning(
        "Refused WebSocket %s from %s: %s",
        scope.get("path", "?"),
        _scope_client(scope),
        reason,
    )
    return await WebsocketDenier()(scope, receive, send)
