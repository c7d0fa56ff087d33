"""Cron slots in a site's zone, with Debian/Vixie cron's DST rules, and crons in words (DESIGN 5)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import pairwise

import pytest

from bench_jobs.core import cron as timing
from bench_jobs.core.cron import SlotCalculator, describe_cron, latest_slot, next_slot, zone_info
from bench_jobs.core.cron_syntax import cron_problem

UTC = timezone.utc
NEW_YORK, BERLIN, KOLKATA = "America/New_York", "Europe/Berlin", "Asia/Kolkata"
# (zone, spring-forward day, fall-back day); Kolkata has no DST and takes New York's days as a control.
DST_DAYS = [
    (NEW_YORK, "2026-03-08", "2026-11-01"),
    (BERLIN, "2026-03-29", "2026-10-25"),
    (KOLKATA, "2026-03-08", "2026-11-01"),
]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(zone: str, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone_info(zone))


def day_window(zone: str, day: str) -> tuple[datetime, datetime]:
    """From 22:00 local the day before `day` to 06:00 local the day after."""
    start = datetime.fromisoformat(day) - timedelta(hours=2)
    end = start + timedelta(hours=32)
    return local(zone, start.isoformat()).astimezone(UTC), local(zone, end.isoformat()).astimezone(UTC)


def simulate(cron: str, zone: str, start: datetime, end: datetime, tick_s: int = 60) -> list[datetime]:
    """The slots a scheduler ticking every tick_s from start to end fires, checking slot invariants on each tick."""
    now = start.astimezone(UTC)
    last = latest_slot(cron, now, zone)
    expected_next = next_slot(cron, now, zone)
    fired: list[datetime] = []
    while now <= end:
        slot, following = latest_slot(cron, now, zone), next_slot(cron, now, zone)
        assert last <= slot <= now < following
        if slot > last:
            assert slot == expected_next, f"{cron} at {now}: next_slot promised {expected_next}, fired {slot}"
            fired.append(slot)
            last = slot
        expected_next = following
        now += timedelta(seconds=tick_s)
    return fired


@pytest.mark.parametrize(
    ("zone", "day", "cron", "fires_utc"),
    [
        # Spring forward: 02:30 does not exist on the day, so it fires once, as the gap ends.
        (NEW_YORK, "2026-03-08", "30 2 * * *", ["2026-03-08T07:00", "2026-03-09T06:30"]),
        (BERLIN, "2026-03-29", "30 2 * * *", ["2026-03-29T01:00", "2026-03-30T00:30"]),
        (KOLKATA, "2026-03-08", "30 2 * * *", ["2026-03-07T21:00", "2026-03-08T21:00"]),
        (NEW_YORK, "2026-03-08", "0 2 * * *", ["2026-03-08T07:00", "2026-03-09T06:00"]),
        (NEW_YORK, "2026-03-08", "30 1 * * *", ["2026-03-08T06:30", "2026-03-09T05:30"]),
        (NEW_YORK, "2026-03-08", "0 3 * * *", ["2026-03-08T07:00", "2026-03-09T07:00"]),
        # Fall back: 01:30 (NY) and 02:30 (Berlin) happen twice; only the first one fires.
        (NEW_YORK, "2026-11-01", "30 1 * * *", ["2026-11-01T05:30", "2026-11-02T06:30"]),
        (BERLIN, "2026-10-25", "30 2 * * *", ["2026-10-25T00:30", "2026-10-26T01:30"]),
        (KOLKATA, "2026-11-01", "30 1 * * *", ["2026-10-31T20:00", "2026-11-01T20:00"]),
        (NEW_YORK, "2026-11-01", "30 2 * * *", ["2026-11-01T07:30", "2026-11-02T07:30"]),
        (BERLIN, "2026-10-25", "30 1 * * *", ["2026-10-24T23:30", "2026-10-26T00:30"]),
        # Daily fires at local midnight whatever the offset that day.
        (NEW_YORK, "2026-03-08", "0 0 * * *", ["2026-03-08T05:00", "2026-03-09T04:00"]),
        (NEW_YORK, "2026-11-01", "0 0 * * *", ["2026-11-01T04:00", "2026-11-02T05:00"]),
        (BERLIN, "2026-03-29", "0 0 * * *", ["2026-03-28T23:00", "2026-03-29T22:00"]),
        (BERLIN, "2026-10-25", "0 0 * * *", ["2026-10-24T22:00", "2026-10-25T23:00"]),
        (KOLKATA, "2026-03-08", "0 0 * * *", ["2026-03-07T18:30", "2026-03-08T18:30"]),
        (KOLKATA, "2026-11-01", "0 0 * * *", ["2026-10-31T18:30", "2026-11-01T18:30"]),
    ],
)
def test_fixed_time_job_fires_once_per_day_across_dst_changes(
    zone: str, day: str, cron: str, fires_utc: list[str]
) -> None:
    assert simulate(cron, zone, *day_window(zone, day)) == [utc(text) for text in fires_utc]


@pytest.mark.parametrize(
    ("zone", "day", "hourly_fires"),
    [
        (NEW_YORK, "2026-03-08", 23),
        (NEW_YORK, "2026-11-01", 25),
        (BERLIN, "2026-03-29", 23),
        (BERLIN, "2026-10-25", 25),
        (KOLKATA, "2026-03-08", 24),
        (KOLKATA, "2026-11-01", 24),
    ],
)
def test_hourly_job_fires_once_per_real_hour_of_the_local_day(zone: str, day: str, hourly_fires: int) -> None:
    on_day = [slot for slot in simulate("0 * * * *", zone, *day_window(zone, day)) if _local_day(slot, zone) == day]
    assert len(on_day) == hourly_fires
    assert {later - earlier for earlier, later in pairwise(on_day)} == {timedelta(hours=1)}


@pytest.mark.parametrize(("zone", "day"), [(zone, day) for zone, *days in DST_DAYS for day in days])
def test_quarter_hourly_job_fires_four_times_per_real_hour(zone: str, day: str) -> None:
    start, end = day_window(zone, day)
    fires = simulate("*/15 * * * *", zone, start, end)
    real_hours = (end - start) // timedelta(hours=1)
    assert len(fires) == 4 * real_hours
    assert {later - earlier for earlier, later in pairwise(fires)} == {timedelta(minutes=15)}


@pytest.mark.parametrize(
    ("cron", "fires_utc"),
    [
        # Wildcard-hour jobs run in both passes of New York's repeated 01:00-01:59.
        ("0 * * * *", ["2026-11-01T05:00", "2026-11-01T06:00", "2026-11-01T07:00"]),
        ("30 * * * *", ["2026-11-01T05:30", "2026-11-01T06:30"]),
        # Vixie counts a `*` minute as wildcard too, so both passes run for these as well.
        ("*/30 1 * * *", ["2026-11-01T05:00", "2026-11-01T05:30", "2026-11-01T06:00", "2026-11-01T06:30"]),
        # Fixed-time jobs run in the first pass only.
        ("0 1 * * *", ["2026-11-01T05:00"]),
        ("0,30 1 * * *", ["2026-11-01T05:00", "2026-11-01T05:30"]),
    ],
)
def test_repeated_hour_runs_wildcard_jobs_twice_and_fixed_jobs_once(cron: str, fires_utc: list[str]) -> None:
    start, end = local(NEW_YORK, "2026-11-01T00:50"), local(NEW_YORK, "2026-11-01T02:10")
    assert simulate(cron, NEW_YORK, start, end) == [utc(text) for text in fires_utc]


@pytest.mark.parametrize(
    ("cron", "fires_utc"),
    [
        # New York skips 02:00-02:59: wildcard jobs have no slot in it, fixed-time jobs fire once as it ends.
        ("0 * * * *", ["2026-03-08T06:00", "2026-03-08T07:00"]),
        ("*/30 2 * * *", []),
        ("0,30 2 * * *", ["2026-03-08T07:00"]),
        ("45 2 * * *", ["2026-03-08T07:00"]),
    ],
)
def test_skipped_hour_drops_wildcard_jobs_and_runs_fixed_jobs_as_it_ends(cron: str, fires_utc: list[str]) -> None:
    start, end = local(NEW_YORK, "2026-03-08T00:50"), local(NEW_YORK, "2026-03-08T03:10")
    assert simulate(cron, NEW_YORK, start, end) == [utc(text) for text in fires_utc]


@pytest.mark.parametrize(
    ("cron", "zone", "now", "latest", "following"),
    [
        ("0 * * * *", "UTC", "2026-05-06T10:20:35", "2026-05-06T10:00", "2026-05-06T11:00"),
        ("0 * * * *", "UTC", "2026-05-06T10:00:00", "2026-05-06T10:00", "2026-05-06T11:00"),
        ("0 * * * *", KOLKATA, "2026-05-06T10:20:00", "2026-05-06T09:30", "2026-05-06T10:30"),
        ("0 0 * * *", KOLKATA, "2026-05-06T18:29:59", "2026-05-05T18:30", "2026-05-06T18:30"),
        ("0 0 * * *", KOLKATA, "2026-05-06T18:30:00", "2026-05-06T18:30", "2026-05-07T18:30"),
        ("0 0 * * 0", "UTC", "2026-05-06T10:00:00", "2026-05-03T00:00", "2026-05-10T00:00"),
        ("0 0 * * 0", KOLKATA, "2026-05-06T10:00:00", "2026-05-02T18:30", "2026-05-09T18:30"),
        ("0 0 * * 0", NEW_YORK, "2026-05-03T03:59:00", "2026-04-26T04:00", "2026-05-03T04:00"),
        ("0 0 1 * *", "UTC", "2026-05-06T10:00:00", "2026-05-01T00:00", "2026-06-01T00:00"),
        ("0 0 1 * *", NEW_YORK, "2026-05-06T10:00:00", "2026-05-01T04:00", "2026-06-01T04:00"),
        ("0 0 1 * *", BERLIN, "2026-03-31T22:30:00", "2026-03-31T22:00", "2026-04-30T22:00"),
        ("0 0 1 1 *", "UTC", "2026-05-06T10:00:00", "2026-01-01T00:00", "2027-01-01T00:00"),
        ("0 0 1 1 *", BERLIN, "2026-05-06T10:00:00", "2025-12-31T23:00", "2026-12-31T23:00"),
        ("0 0 1 1 *", KOLKATA, "2025-12-31T18:45:00", "2025-12-31T18:30", "2026-12-31T18:30"),
        # A weekday 09:00 job over a weekend in New York (EDT, 13:00 UTC).
        ("0 9 * * 1-5", NEW_YORK, "2026-05-08T12:59:00", "2026-05-07T13:00", "2026-05-08T13:00"),
        ("0 9 * * 1-5", NEW_YORK, "2026-05-08T13:00:00", "2026-05-08T13:00", "2026-05-11T13:00"),
        ("0 9 * * 1-5", NEW_YORK, "2026-05-09T16:00:00", "2026-05-08T13:00", "2026-05-11T13:00"),
        ("0 9 * * 1-5", NEW_YORK, "2026-05-10T23:00:00", "2026-05-08T13:00", "2026-05-11T13:00"),
        ("0 9 * * 1-5", NEW_YORK, "2026-05-11T13:00:01", "2026-05-11T13:00", "2026-05-12T13:00"),
        # Day of month and day of week both restricted: either matches (the 13th, or any Friday).
        ("0 0 13 * 5", "UTC", "2026-05-09T00:00:00", "2026-05-08T00:00", "2026-05-13T00:00"),
        # In the second pass of New York's repeated hour (01:10 EST), first-pass times later on the clock are past.
        ("50 1 * * *", NEW_YORK, "2026-11-01T06:10:00", "2026-11-01T05:50", "2026-11-02T06:50"),
        ("*/15 * * * *", NEW_YORK, "2026-11-01T06:10:00", "2026-11-01T06:00", "2026-11-01T06:15"),
        # In the first pass (01:50 EDT), the next quarter hour is 01:00 again, an hour later on the clock.
        ("*/15 * * * *", NEW_YORK, "2026-11-01T05:50:00", "2026-11-01T05:45", "2026-11-01T06:00"),
        ("50 1 * * *", NEW_YORK, "2026-11-01T05:50:00", "2026-11-01T05:50", "2026-11-02T06:50"),
        ("30 2 * * *", NEW_YORK, "2026-03-08T06:59:59", "2026-03-07T07:30", "2026-03-08T07:00"),
    ],
)
def test_latest_and_next_slot_in_the_site_zone(cron: str, zone: str, now: str, latest: str, following: str) -> None:
    assert latest_slot(cron, utc(now), zone) == utc(latest)
    assert next_slot(cron, utc(now), zone) == utc(following)


@pytest.mark.parametrize("cron", ["*/4 * * * *", "0 * * * *", "30 2 * * *"])
def test_slots_are_utc_whatever_zone_now_is_given_in(cron: str) -> None:
    now_utc = utc("2026-03-08T07:05:00")
    for now in (now_utc, now_utc.astimezone(zone_info(BERLIN)), now_utc.astimezone(zone_info(KOLKATA))):
        slot = latest_slot(cron, now, NEW_YORK)
        assert slot == latest_slot(cron, now_utc, NEW_YORK)
        assert slot.tzinfo is UTC


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        latest_slot("0 * * * *", datetime(2026, 5, 6, 10, 0), "UTC")


def test_slot_calculator_computes_each_cron_and_zone_once_per_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def counting_latest_slot(cron: str, now: datetime, zone: str) -> datetime:
        calls.append((cron, zone))
        return latest_slot(cron, now, zone)

    monkeypatch.setattr(timing, "latest_slot", counting_latest_slot)
    now = utc("2026-05-06T10:20:35")
    slots = SlotCalculator(now)
    crons = ("*/4 * * * *", "0 * * * *", "0 0 * * *")
    for _site in range(1000):
        for cron in crons:
            for zone in (NEW_YORK, KOLKATA):
                assert slots.latest(cron, zone) == latest_slot(cron, now, zone)
    assert sorted(calls) == sorted((cron, zone) for cron in crons for zone in (NEW_YORK, KOLKATA))


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("@daily", "every day at 00:00"),
        ("* * * * *", "every minute"),
        ("*/15 * * * *", "every 15 minutes"),
        ("*/1 * * * *", "every minute"),
        ("0 * * * *", "every hour at :00"),
        ("5 * * * *", "every hour at :05"),
        ("30 */2 * * *", "every 2 hours at :30"),
        ("0 0 * * *", "every day at 00:00"),
        ("30 2 * * *", "every day at 02:30"),
        ("0 0 * * 0", "every Sunday at 00:00"),
        ("0 0 * * 7", "every Sunday at 00:00"),
        ("15 6 * * sat", "every Saturday at 06:15"),
        ("0 9 * * 1-5", "at 09:00 on Mon-Fri"),
        ("0 9 * * MON-FRI", "at 09:00 on Mon-Fri"),
        ("0 18 * * 1,3,5", "at 18:00 on Mon,Wed,Fri"),
        ("0 0 1 * *", "on day 1 of every month at 00:00"),
        ("0 12 15 * *", "on day 15 of every month at 12:00"),
        ("0 0 1 1 *", "every year on 1 Jan at 00:00"),
        ("30 8 24 12 *", "every year on 24 Dec at 08:30"),
        ("*/5 9-17 * * 1-5", 'cron "*/5 9-17 * * 1-5"'),
        ("0 0 1 * 1", 'cron "0 0 1 * 1"'),
        ("0 0 * * */2", 'cron "0 0 * * */2"'),
        ("0 0 L * *", 'cron "0 0 L * *"'),
        ("0 0 * jan *", 'cron "0 0 * jan *"'),
        ("0 8,20 * * *", 'cron "0 8,20 * * *"'),
    ],
)
def test_describe_cron_puts_known_shapes_in_words(cron: str, words: str) -> None:
    assert describe_cron(cron) == words


def _local_day(slot: datetime, zone: str) -> str:
    return slot.astimezone(zone_info(zone)).date().isoformat()


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("0 0 31 2 *", "never matches a real date"),
        ("0 0 30 2 *", "never matches a real date"),
        ("0 0 31 4,6,9,11 *", "never matches a real date"),
        ("0 0 29 2 *", None),  # leap days exist
        ("0 0 31 2 1", None),  # day and weekday both restricted: either one matching is enough (Vixie cron)
        ("0 0 31 * *", None),
        ("0 0 L 2 *", None),
        ("*/5 * * * *", None),
        ("61 * * * *", "not a valid cron expression"),
        ("* * *", "5 fields"),
        (5, "must be text"),
    ],
)
def test_cron_problem_names_strings_that_are_malformed_or_never_match_a_date(cron: object, problem: str | None) -> None:
    found = cron_problem(cron)
    assert found == problem if problem is None else problem in str(found)
    if problem is None:
        assert latest_slot(str(cron), utc("2026-03-01T00:00"), BERLIN) <= utc("2026-03-01T00:00")
