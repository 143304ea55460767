"""Deleting old rows without holding the database's write lock for long.

SQLite has one writer at a time. A single ``DELETE`` of a million rows holds
the write lock for seconds, and the scheduler's once-a-second insert and the
web process's writes queue behind it until their busy timeout runs out
("database is locked"). Deleting in small batches, each its own short
transaction with a pause after it, lets the other writers in between batches.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.db import models, transaction

logger = logging.getLogger(__name__)

DEFAULT_BATCH = 2000

# Seconds to wait after each batch, so a writer polling for the lock (SQLite's
# busy handler sleeps up to 100 ms between tries) finds it free.
DEFAULT_PAUSE_S = 0.02


def delete_in_batches(
    queryset_or_model: models.QuerySet | type[models.Model],
    before: datetime,
    batch: int = DEFAULT_BATCH,
    field: str = "timestamp",
    pause: float = DEFAULT_PAUSE_S,
) -> int:
    """Delete rows whose ``field`` is older than ``before``; return how many.

    Each batch of about ``batch`` rows (more when several rows share the cut
    value) is one short transaction. Batches are ranges of ``field``, which
    should be indexed: a range walks the index, where cutting by primary key
    would make SQLite rescan every old row for each batch.
    """
    if batch < 1:
        raise ValueError(f"batch={batch!r}: expected a positive number of rows")
    source = _queryset(queryset_or_model)
    old = source.filter(**{f"{field}__lt": before})

    deleted = 0
    while True:
        cut = _batch_end(old, field, batch)
        doomed = old if cut is None else source.filter(**{f"{field}__lte": cut})
        with transaction.atomic():
            count, _ = doomed.delete()
        deleted += count
        if cut is None:
            break
        time.sleep(pause)

    if deleted:
        logger.info(
            "Deleted %d %s rows older than %s",
            deleted,
            source.model._meta.label,
            before,
        )
    return deleted


def _queryset(source: models.QuerySet | type[models.Model]) -> models.QuerySet:
    if isinstance(source, models.QuerySet):
        return source
    return source._default_manager.all()


def _batch_end(queryset: models.QuerySet, field: str, batch: int) -> object | None:
    """The ``field`` value that ends the next batch, or None if one batch is left."""
    values = queryset.order_by(field).values_list(field, flat=True)
    found = list(values[batch - 1 : batch])
    return found[0] if found else None
