"""Six-field crons read as croniter (and so Frappe) reads them: the sixth field is seconds. A job due several
times within one tick fires once per tick, for the latest slot; with a shorter tick it fires on each tick it is
due (issue 18 item 5). Expected times are worked out by hand; 5-field crons keep Vixie cron's slots."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench_jobs.core.cron import describe_cron, due_more_than_once_per_tick, latest_slot, next_slot, zone_info
from bench_jobs.core.cron_syntax import cron_problem, parse_cron

UTC = timezone.utc
NEW_YORK, BERLIN = "America/New_York", "Europe/Berlin"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(zone: str, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone_info(zone))


def fired(cron: str, zone: str, start: datetime, end: datetime, tick_s: int) -> list[datetime]:
    """The slots a scheduler ticking every tick_s (on multiples of it) from start to end fires."""
    now, last, out = start, latest_slot(cron, start, zone), []
    while now <= end:
        slot = latest_slot(cron, now, zone)
        assert last <= slot <= now < next_slot(cron, now, zone)
        if slot > last:
            out.append(slot)
            last = slot
        now += timedelta(seconds=tick_s)
    return out


@pytest.mark.parametrize(
    ("cron", "seconds"),
    [
        ("* * * * * 0/5", tuple(range(0, 60, 5))),  # frappe/press
        ("* * * * * 0/30", (0, 30)),  # frappe/press
        ("* * * * * */20", (0, 20, 40)),
        ("* * * * * 10/30", (10, 40)),
        ("* * * * * 15", (15,)),
        ("* * * * * 0,7,59", (0, 7, 59)),
        ("* * * * * 5-8", (5, 6, 7, 8)),
        ("0 9 * * * 0", (0,)),
        ("0 9 * * *", (0,)),  # five fields: second 0
    ],
)
def test_sixth_field_is_seconds(cron: str, seconds: tuple[int, ...]) -> None:
    assert cron_problem(cron) is None
    assert parse_cron(cron).seconds == seconds


@pytest.mark.parametrize(
    ("cron", "now", "latest", "following"),
    [
        ("* * * * * 0/5", "2026-05-06T10:20:00", "2026-05-06T10:20:00", "2026-05-06T10:20:05"),
        ("* * * * * 0/5", "2026-05-06T10:20:07.5", "2026-05-06T10:20:05", "2026-05-06T10:20:10"),
        ("* * * * * 0/5", "2026-05-06T10:20:59", "2026-05-06T10:20:55", "2026-05-06T10:21:00"),
        ("* * * * * 0/30", "2026-05-06T10:20:00", "2026-05-06T10:20:00", "2026-05-06T10:20:30"),
        ("* * * * * 0/30", "2026-05-06T10:20:29.999", "2026-05-06T10:20:00", "2026-05-06T10:20:30"),
        ("* * * * * 0/30", "2026-05-06T10:20:45", "2026-05-06T10:20:30", "2026-05-06T10:21:00"),
        # The second field's first value after now's second is in the previous minute.
        ("* * * * * 10/30", "2026-05-06T10:20:00", "2026-05-06T10:19:40", "2026-05-06T10:20:10"),
        ("* * * * * 10/30", "2026-05-06T10:20:40", "2026-05-06T10:20:40", "2026-05-06T10:21:10"),
        # Minute and hour still restrict: 09:00:15 daily, 09:30:00-09:30:50 every ten seconds.
        ("0 9 * * * 15", "2026-05-06T09:00:10", "2026-05-05T09:00:15", "2026-05-06T09:00:15"),
        ("0 9 * * * 15", "2026-05-06T09:00:15", "2026-05-06T09:00:15", "2026-05-07T09:00:15"),
        ("30 9 * * * */10", "2026-05-06T09:31:00", "2026-05-06T09:30:50", "2026-05-07T09:30:00"),
        ("30 9 * * * */10", "2026-05-06T09:30:25", "2026-05-06T09:30:20", "2026-05-06T09:30:30"),
        # The day fields keep Vixie cron's rules: Mondays only, a Monday's first slot is 00:00:00.
        ("* * * * 1 0/30", "2026-05-10T23:59:59", "2026-05-04T23:59:30", "2026-05-11T00:00:00"),
        ("* * * * 1 0/30", "2026-05-11T00:00:00", "2026-05-11T00:00:00", "2026-05-11T00:00:30"),
    ],
)
def test_latest_and_next_slot_with_seconds(cron: str, now: str, latest: str, following: str) -> None:
    assert latest_slot(cron, utc(now), "UTC") == utc(latest)
    assert next_slot(cron, utc(now), "UTC") == utc(following)


@pytest.mark.parametrize(
    ("cron", "tick_s", "fires_per_hour", "once_per_tick"),
    [
        # A 60 s tick: due 12 (or 2) times a minute, the job runs once per tick, for the latest slot.
        ("* * * * * 0/5", 60, 60, True),
        ("* * * * * 0/30", 60, 60, True),
        # Shorter ticks: it fires on each tick it is due.
        ("* * * * * 0/30", 30, 120, False),
        ("* * * * * 0/30", 10, 120, False),
        ("* * * * * 0/5", 10, 360, True),
        ("* * * * * 0/5", 5, 720, False),
        ("* * * * * 0/5", 3, 720, False),
        ("* * * * * 0/5", 2, 720, False),
        ("* * * * * 0/5", 1, 720, False),
        ("* * * * * 15", 60, 60, False),
        ("*/4 * * * *", 1, 15, False),  # five fields: unchanged by a short tick
    ],
)
def test_a_job_due_several_times_in_a_tick_fires_once_per_tick(
    cron: str, tick_s: int, fires_per_hour: int, once_per_tick: bool
) -> None:
    start = utc("2026-05-06T09:59:59")
    slots = fired(cron, "UTC", start, start + timedelta(hours=1), tick_s)
    assert len(slots) == fires_per_hour
    assert due_more_than_once_per_tick(cron, tick_s) == once_per_tick


@pytest.mark.parametrize(
    ("zone", "cron", "start", "end", "fires_utc"),
    [
        # Spring forward in Berlin (02:00 -> 03:00): a wildcard job follows real time across the gap.
        (BERLIN, "* * * * * 0/30", "2026-03-29T01:59:00", "2026-03-29T03:00:30", [
            "2026-03-29T00:59:30", "2026-03-29T01:00:00", "2026-03-29T01:00:30"]),
        # A fixed-time job whose 02:30 is skipped fires once, as the gap ends, at its second.
        (BERLIN, "30 2 * * * 15", "2026-03-29T01:00:00", "2026-03-29T04:00:00", ["2026-03-29T01:00:15"]),
        # Fall back in New York (01:00-01:59 twice): a wildcard job runs in both passes, a fixed one in the first.
        (NEW_YORK, "0 1 * * * 0/30", "2026-11-01T00:59:00", "2026-11-01T02:00:00", ["2026-11-01T05:00:00",
            "2026-11-01T05:00:30"]),
        (NEW_YORK, "0 * * * * 20", "2026-11-01T00:59:00", "2026-11-01T02:01:00", [
            "2026-11-01T05:00:20", "2026-11-01T06:00:20", "2026-11-01T07:00:20"]),
    ],
)  # fmt: skip
def test_seconds_crons_follow_vixie_dst_rules(zone: str, cron: str, start: str, end: str, fires_utc: list[str]) -> None:
    begin = local(zone, start).astimezone(UTC)
    finish = local(zone, end).astimezone(UTC) if zone == BERLIN else begin + timedelta(hours=2, minutes=2)
    got = fired(cron, zone, begin, finish, 10)
    assert got[: len(fires_utc)] == [utc(text) for text in fires_utc]
    if zone == NEW_YORK:
        assert got == [utc(text) for text in fires_utc]


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("* * * * * 0/5", "every 5 seconds"),
        ("* * * * * */30", "every 30 seconds"),
        ("* * * * * */1", "every second"),
        ("0 9 * * * 0", "every day at 09:00"),
        ("0 9 * * * 15", 'cron "0 9 * * * 15"'),
    ],
)
def test_seconds_crons_in_words(cron: str, words: str) -> None:
    assert describe_cron(cron) == words


def test_why_explains_a_seconds_cron_by_the_slots_its_ticks_fire() -> None:
    """A 60 s tick fires `0/5` once a minute: `why` must not list the 11 slots a minute no tick fires (they read
    as "not seen", the scheduler down)."""
    from bench_jobs.core.cron import recent_slots

    now = datetime(2026, 12, 7, 20, 0, 37, tzinfo=timezone.utc)
    by_minute = [slot.strftime("%H:%M:%S") for slot in recent_slots("* * * * * 0/5", now, "UTC", 3, 60)]
    assert by_minute == ["19:58:00", "19:59:00", "20:00:00"]
    by_5_s = [slot.strftime("%H:%M:%S") for slot in recent_slots("* * * * * 0/5", now, "UTC", 3, 5)]
    assert by_5_s == ["20:00:25", "20:00:30", "20:00:35"]
    assert recent_slots("*/15 * * * *", now, "UTC", 3, 60) == recent_slots("*/15 * * * *", now, "UTC", 3)
