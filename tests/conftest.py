"""Shared fixtures. The throwaway data directory is set up by tests/testenv.py."""

import pytest


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
