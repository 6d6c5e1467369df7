"""A line's daily limit rolls over at the box's local midnight (Slot's counters)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from conftest import modem_config

from modem_dialer.call.line import open_line
from modem_dialer.campaign.limits import LimitsConfig
from modem_dialer.campaign.pool import Slot, local_midnight


async def test_calls_per_day_reopen_at_the_next_local_midnight(make_bank) -> None:
    # the local day is looked up only when the time leaves it: the counters must still reset
    # at midnight, and only then (a line on a simulated modem; the times are the test's)
    line = await open_line(modem_config(await make_bank("quectel")))
    try:
        _check_day_limit(Slot(line, LimitsConfig(calls_per_day=2), datetime(2026, 3, 28, 20, 0, tzinfo=timezone.utc)))
    finally:
        await line.close()


def _check_day_limit(slot: Slot) -> None:
    now = datetime(2026, 3, 28, 20, 0, tzinfo=timezone.utc)
    slot.started("+33612345678", now)
    slot.finished("answered", 10.0, now + timedelta(seconds=10))
    slot.started("+33612345679", now + timedelta(minutes=1))
    midnight = local_midnight(now) + timedelta(days=1)
    until, why = slot.blocked_until(now + timedelta(minutes=2))
    assert why == "2 calls per day" and until == local_midnight(midnight + timedelta(hours=1))
    assert slot.blocked_until(midnight - timedelta(seconds=1))[1] == "2 calls per day"
    assert slot.blocked_until(midnight + timedelta(seconds=1)) == (None, None)
    assert slot.calls_today == 0
    # and the next day's end is found again (a day of 23 or 25 hours included)
    for days in range(1, 400, 37):
        t = midnight + timedelta(days=days, hours=12)
        slot.started("+33612345670", t)
        assert slot.day_start == local_midnight(t) and slot.calls_today == 1
