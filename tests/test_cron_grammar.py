"""Cron strings read exactly as Debian/Vixie cron reads them, plus croniter's documented extensions (DESIGN 3).

Expected fire times were worked out by hand from Vixie cron's rules on the 2026 calendar (1 January 2026 is a
Thursday), not by running another cron library.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench_jobs.core.cron import all_cron, describe_cron, latest_slot, next_slot, zone_info
from bench_jobs.core.cron_syntax import cron_problem, parse_cron

UTC = timezone.utc
START = datetime(2025, 12, 31, 23, 59)  # naive wall time just before 2026


def fires(cron: str, count: int, start: datetime = START) -> list[str]:
    """The first `count` wall times after `start` at which `cron` fires, as 'YYYY-MM-DD HH:MM'."""
    spec, moment, out = parse_cron(cron), start, []
    for _ in range(count):
        moment = spec.next_after(moment)
        out.append(moment.strftime("%Y-%m-%d %H:%M"))
    return out


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        # A range with equal ends is that one value (croniter 5+ widens it to the whole field).
        ("0 9-9 * * *", ["2026-01-01 09:00", "2026-01-02 09:00", "2026-01-03 09:00"]),
        ("30 23-23 * * *", ["2026-01-01 23:30", "2026-01-02 23:30"]),
        # Day rule, either field starting with `*`: both must match. Odd days that are Mondays only.
        ("0 0 */2 * 1", ["2026-01-05 00:00", "2026-01-19 00:00", "2026-02-09 00:00", "2026-02-23 00:00"]),
        ("0 0 */10 * *", ["2026-01-01 00:00", "2026-01-11 00:00", "2026-01-21 00:00", "2026-01-31 00:00"]),
        ("0 0 * * 1", ["2026-01-05 00:00", "2026-01-12 00:00"]),
        ("0 0 1 * *", ["2026-01-01 00:00", "2026-02-01 00:00"]),
        # Day rule, neither field starting with `*`: either is enough (the 1st, the 15th, and every Friday).
        (
            "0 0 1,15 * 5",
            ["2026-01-01 00:00", "2026-01-02 00:00", "2026-01-09 00:00", "2026-01-15 00:00", "2026-01-16 00:00"],
        ),
        # ... which makes the classic "first Monday" attempt fire on days 1-7 and on every Monday.
        ("0 0 1-7 * mon", [f"2026-01-0{day} 00:00" for day in range(1, 8)] + ["2026-01-12 00:00"]),
        ("0 0 29 2 1", ["2026-02-02 00:00", "2026-02-09 00:00", "2026-02-16 00:00"]),  # the month still applies
        ("0 0 29 2 *", ["2028-02-29 00:00", "2032-02-29 00:00"]),
        # Names (any case), ranges of names, steps over ranges, weekday 7 = Sunday, lists.
        ("0 0 * JAN Fri", ["2026-01-02 00:00", "2026-01-09 00:00"]),
        ("0 0 * * mon-fri/2", ["2026-01-02 00:00", "2026-01-05 00:00", "2026-01-07 00:00"]),
        ("0 0 * * 7", ["2026-01-04 00:00", "2026-01-11 00:00"]),
        ("0 0 * * 5-7", ["2026-01-02 00:00", "2026-01-03 00:00", "2026-01-04 00:00", "2026-01-09 00:00"]),
        ("30 4 1 jan,jul *", ["2026-01-01 04:30", "2026-07-01 04:30", "2027-01-01 04:30"]),
        ("*/20 1 * * *", ["2026-01-01 01:00", "2026-01-01 01:20", "2026-01-01 01:40", "2026-01-02 01:00"]),
        ("10-30/10 * * * *", ["2026-01-01 00:10", "2026-01-01 00:20", "2026-01-01 00:30", "2026-01-01 01:10"]),
        ("*/45 * * * *", ["2026-01-01 00:00", "2026-01-01 00:45", "2026-01-01 01:00"]),
        # The @ forms.
        ("@yearly", ["2026-01-01 00:00", "2027-01-01 00:00"]),
        ("@annually", ["2026-01-01 00:00", "2027-01-01 00:00"]),
        ("@monthly", ["2026-01-01 00:00", "2026-02-01 00:00"]),
        ("@weekly", ["2026-01-04 00:00", "2026-01-11 00:00"]),
        ("@daily", ["2026-01-01 00:00", "2026-01-02 00:00", "2026-01-03 00:00"]),
        ("@midnight", ["2026-01-01 00:00", "2026-01-02 00:00"]),
        ("@hourly", ["2026-01-01 00:00", "2026-01-01 01:00"]),
        # Extensions (croniter's, used by Frappe apps): N/step, L, dL, d#n.
        ("0/15 * * * *", ["2026-01-01 00:00", "2026-01-01 00:15", "2026-01-01 00:30", "2026-01-01 00:45"]),
        ("5/20 * * * *", ["2026-01-01 00:05", "2026-01-01 00:25", "2026-01-01 00:45", "2026-01-01 01:05"]),
        ("0 0 L * *", ["2026-01-31 00:00", "2026-02-28 00:00", "2026-03-31 00:00"]),
        ("0 0 L 2 *", ["2026-02-28 00:00", "2027-02-28 00:00", "2028-02-29 00:00"]),
        ("0 0 * * 5L", ["2026-01-30 00:00", "2026-02-27 00:00"]),
        ("0 0 * * 1#1", ["2026-01-05 00:00", "2026-02-02 00:00"]),
        ("0 0 * * 5#2", ["2026-01-09 00:00", "2026-02-13 00:00"]),
    ],
)
def test_cron_fires_where_debian_cron_does(cron: str, expected: list[str]) -> None:
    assert cron_problem(cron) is None
    assert fires(cron, len(expected)) == expected


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("@reboot", "@reboot runs once when cron starts"),
        ("@DAILY", "unknown @ form"),
        ("@every 5m", "unknown @ form"),
        ("5-3 * * * *", "a range runs from low to high"),
        ("*/0 * * * *", "a step is a whole number greater than 0"),
        ("*/x * * * *", "a step is a whole number greater than 0"),
        ("60 * * * *", "minute field: '60' is not 0-59"),
        ("* 24 * * *", "hour field"),
        ("* * 0 * *", "day of month field"),
        ("* * * 13 *", "month field: '13' is not 1-12 or jan-dec"),
        ("* * * * 8", "day of week field"),
        ("* * * * monday", "day of week field"),
        ("1,,2 * * * *", "minute field"),
        ("L * * * *", "minute field"),
        ("0 0 * * 1#6", "day of week field"),
        ("* * * *", "5 fields"),
        ("* * * * * * *", "5 fields"),
        ("* * * * * 60", "second field"),
        ("0 0 31 2 *", "never matches a real date"),
        ("0 0 30 2 *", "never matches a real date"),
    ],
)
def test_cron_refuses_what_debian_cron_refuses_with_a_reason(cron: str, problem: str) -> None:
    assert problem in str(cron_problem(cron))


def chain(cron: str, zone: str, start: str, count: int) -> list[str]:
    """The next `count` slots after `start` (UTC) in `zone`, as UTC 'YYYY-MM-DDTHH:MM'."""
    now, out = datetime.fromisoformat(start).replace(tzinfo=UTC), []
    for _ in range(count):
        now = next_slot(cron, now, zone)
        out.append(now.strftime("%Y-%m-%dT%H:%M"))
    return out


@pytest.mark.parametrize(
    ("cron", "zone", "start", "expected"),
    [
        # Spring forward: 02:xx does not exist. A fixed-time job runs once as the gap ends, a wildcard job skips it.
        ("30 2 * * *", "America/New_York", "2026-03-08T05:00", ["2026-03-08T07:00", "2026-03-09T06:30"]),
        ("30 2 * * *", "Europe/Berlin", "2026-03-28T23:00", ["2026-03-29T01:00", "2026-03-30T00:30"]),
        ("*/30 2 * * *", "America/New_York", "2026-03-08T06:00", ["2026-03-09T06:00", "2026-03-09T06:30"]),
        # Fall back: 01:xx (New York) and 02:xx (Berlin) happen twice; fixed-time once, wildcard in both passes.
        ("30 1 * * *", "America/New_York", "2026-11-01T04:00", ["2026-11-01T05:30", "2026-11-02T06:30"]),
        ("30 2 * * *", "Europe/Berlin", "2026-10-24T23:00", ["2026-10-25T00:30", "2026-10-26T01:30"]),
        ("*/30 2 * * *", "Europe/Berlin", "2026-10-24T23:00", ["2026-10-25T00:00", "2026-10-25T00:30",
                                                              "2026-10-25T01:00", "2026-10-25T01:30"]),
        # An equal-ends range on a DST day stays one hour.
        ("0 9-9 * * *", "Europe/Berlin", "2026-03-29T00:00", ["2026-03-29T07:00", "2026-03-30T07:00"]),
    ],
)  # fmt: skip
def test_cron_on_a_daylight_saving_day_in_two_zones(cron: str, zone: str, start: str, expected: list[str]) -> None:
    assert chain(cron, zone, start, len(expected)) == expected


def test_all_runs_every_scheduler_interval_minutes_of_the_site_clock() -> None:
    assert all_cron(240) == "*/4 * * * *"
    assert describe_cron(all_cron(240)) == "every 4 minutes"
    # Read in the site's zone: Kathmandu is UTC+5:45, so its minute 0 is UTC minute 15.
    assert chain(all_cron(240), "Asia/Kathmandu", "2026-01-01T00:00", 3) == [
        "2026-01-01T00:03",
        "2026-01-01T00:07",
        "2026-01-01T00:11",
    ]
    assert chain(all_cron(240), "UTC", "2026-01-01T00:00", 2) == ["2026-01-01T00:04", "2026-01-01T00:08"]
    # Not a multiple of 60: whole minutes, as Frappe (`// 60`). 420 s is */7: :56, then :00 of the next hour.
    assert all_cron(450) == "*/7 * * * *"
    assert chain(all_cron(420), "UTC", "2026-01-01T00:50", 3) == [
        "2026-01-01T00:56",
        "2026-01-01T01:00",
        "2026-01-01T01:07",
    ]
    # Below a minute (Frappe's */0 would fail): every that many seconds since the epoch, an extension.
    assert all_cron(20) == "@every 20s" and describe_cron("@every 20s") == "every 20 seconds"
    at = datetime(2026, 1, 1, 0, 0, 50, tzinfo=UTC)
    assert latest_slot(all_cron(20), at, "Asia/Kathmandu") == datetime(2026, 1, 1, 0, 0, 40, tzinfo=UTC)
    assert next_slot(all_cron(20), at, "Asia/Kathmandu") == datetime(2026, 1, 1, 0, 1, 0, tzinfo=UTC)
    assert cron_problem("@every 20s") is not None  # never from hooks
    assert zone_info("Asia/Kathmandu").utcoffset(datetime(2026, 1, 1)) == timedelta(hours=5, minutes=45)
