"""Shared test setup: a throwaway data directory so tests never touch ./data."""

import os
import tempfile

_DATA = tempfile.mkdtemp(prefix="cpusched-test-")
os.environ.setdefault("CPUSCHED_DATA_DIR", _DATA)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_web_caches():
    """Start every test with no cached parameters, rate counts or history.

    The web process caches parameters for a second, counts requests per
    client per minute and keeps computed history chunks; across tests those
    would leak one test's settings and traffic into the next.
    """
    from django.core.cache import cache

    from cpusched import runtime
    from monitoring.history import cache as history_cache

    runtime.forget()
    cache.clear()
    history_cache.clear()
    yield
    runtime.forget()
