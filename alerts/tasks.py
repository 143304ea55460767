"""Alert checks the background worker runs once a minute.

The scheduler raises most alerts itself, but it cannot report its own
absence: :func:`check_scheduler` raises ``service.scheduler_down`` when the
live-state heartbeat is stale and resolves it when the heartbeat is back.
:func:`check_reservations` gives ``reservation.advance_notice`` minutes of
notice before a reserved slot starts.
"""

from __future__ import annotations

import logging
import time

from alerts import service
from cpusched import config
from monitoring import livestate

logger = logging.getLogger(__name__)

SCHEDULER_DOWN_KEY = "service.scheduler_down"


def check_scheduler() -> bool:
    """Raise or resolve the scheduler-down alert; return whether it is alive."""
    params = config.snapshot()
    state = livestate.read()
    if state is not None and state["alive"]:
        service.resolve_alert(SCHEDULER_DOWN_KEY)
        return True

    if state is None:
        message = "The scheduler has never run: CPU is not being controlled"
    elif state.get("stopped"):
        message = "The scheduler was stopped: the group keeps its last safe cap"
    else:
        message = (
            f"The scheduler's heartbeat is {state['age_s']:.0f} s old: it is not "
            "running, and CPU is not being controlled"
        )
    service.raise_alert(
        SCHEDULER_DOWN_KEY, "service", "critical", message, params=params
    )
    return False


def check_reservations(now: float | None = None) -> list[str]:
    """Notice alerts for slots starting within ``reservation.advance_notice``."""
    from reservations.profile import future_profile

    params = config.snapshot()
    if not params["alerts.reservation_alert_enabled"]:
        return []
    now_ts = int(time.time() if now is None else now)
    notice_s = params["reservation.advance_notice"] * 60
    if notice_s <= 0:
        return []

    noticed = []
    for slot in future_profile(now_ts, now_ts + notice_s + 1):
        if slot.start <= now_ts:
            continue
        minutes = max(1, round((slot.start - now_ts) / 60))
        key = f"reservation.notice.{slot.reservation_id}.{slot.start}"
        message = (
            f"Reservation {slot.name!r} starts in {minutes} min at {slot.percent:g} %"
        )
        service.raise_alert(key, "reservation", "info", message, params=params)
        noticed.append(key)
    return noticed
