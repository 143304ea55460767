"""Turning operator mistakes met during a request into clear answers.

* A :class:`~cpusched.config.ConfigError` raised while serving a request means
  the environment or ``config.ini`` is bad (the database layer is validated on
  every write). The answer is a 503 naming the problem, JSON under ``/api/``,
  a short page elsewhere, instead of a bare 500.
* Django answers a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` and other
  suspicious requests through ``handler400``; under ``/api/`` that answer is
  JSON with a ``detail`` field like every other API error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

from cpusched.config import ConfigError

logger = logging.getLogger(__name__)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


class ConfigErrorMiddleware:
    """Answer 503 with the problem when the configuration cannot be read."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if not isinstance(exception, ConfigError):
            return None
        logger.error(
            "Configuration refused while serving %s: %s", request.path, exception
        )
        detail = f"The configuration cannot be read: {exception}"
        if _is_api(request):
            errors = [{"key": p.key, "message": str(p)} for p in exception.problems]
            return JsonResponse({"detail": detail, "errors": errors}, status=503)
        body = (
            "<!doctype html><title>Configuration error</title>"
            f"<h1>Configuration error</h1><p>{escape(detail)}</p>"
            "<p>Fix the environment variable or config.ini named above; "
            "nothing stored was changed.</p>"
        )
        return HttpResponse(body, status=503)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: JSON under /api/, Django's plain page elsewhere."""
    too_big = isinstance(exception, RequestDataTooBig)
    status = 413 if too_big else 400
    if too_big:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = f"Request body too large: at most {limit} bytes are accepted"
    else:
        detail = "Bad request"
    if _is_api(request):
        return JsonResponse({"detail": detail}, status=status)
    return HttpResponse(f"<!doctype html><h1>{escape(detail)}</h1>", status=status)
