"""API keys: create one (the secret is shown once), check one, never store it.

A secret looks like ``cps_<prefix>_<token>``. The prefix (8 hex characters) is
stored in clear so a key can be found with one indexed lookup; the whole secret
is stored only as a SHA-256 digest. A slow password hash is not needed here:
the token carries 256 random bits, so a stolen digest cannot be brute-forced,
and a fast hash keeps checking a key cheap on every API request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from django.utils import timezone

from cpusched.models import ApiKey

logger = logging.getLogger(__name__)

SCHEME = "cps"
PREFIX_BYTES = 4

# Recording every use would add a database write to every API request; once a
# minute is precise enough to tell a live key from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> tuple[str, str]:
    """A fresh secret and its lookup prefix: ``(prefix, secret)``."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    return prefix, f"{SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"


def create_key(user, name: str) -> tuple[ApiKey, str]:
    """Store a new key for ``user``; return it and its secret (shown only once)."""
    prefix, secret = new_secret()
    key = ApiKey.objects.create(
        name=name, prefix=prefix, hashed=digest(secret), user=user
    )
    logger.info("API key %r (%s) created for %s", name, prefix, user)
    return key, secret


def split_prefix(secret: str) -> str | None:
    """The lookup prefix of a well-formed secret, or None."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != SCHEME:
        return None
    if len(parts[1]) != PREFIX_BYTES * 2 or not parts[2]:
        return None
    return parts[1]


def check_key(secret: str | None) -> ApiKey | None:
    """The active key whose secret this is (its user loaded), or None."""
    prefix = split_prefix((secret or "").strip())
    if prefix is None:
        return None

    wanted = digest(secret.strip())
    candidates = ApiKey.objects.filter(prefix=prefix, active=True)
    for key in candidates.select_related("user"):
        if hmac.compare_digest(key.hashed, wanted) and key.user.is_active:
            _mark_used(key)
            return key
    return None


def _mark_used(key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used_at and now - key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now
