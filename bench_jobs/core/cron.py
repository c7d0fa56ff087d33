"""Pure cron and time-zone arithmetic: each scheduled job's slots in its site's zone, with Vixie cron's DST
rules; the cron of Frappe's events for a site; crons in words. Cron strings are read by cron_syntax."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from .cron_syntax import AT_FORMS, CronSpec, parse_cron

# Frappe's CRON_MAP. `all` and the maintenance events are placed per site (site_event_cron).
EVENT_CRONS: dict[str, str] = {
    "all": "*/4 * * * *",
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
    "annual": "0 0 1 1 *",
    "hourly_maintenance": "0 * * * *",
    "daily_maintenance": "0 0 * * *",
}


def maintenance_offset_min(site: str) -> int:
    """Frappe's per-site spread of maintenance jobs over the hour: sha1 of the site name, modulo 60 minutes."""
    return int(hashlib.sha1(site.encode()).hexdigest(), 16) % 60


def all_cron(scheduler_interval_s: int) -> str:
    """Frappe's cron for `all`: every scheduler_interval // 60 minutes of the clock (`*/N * * * *`). Below
    60 s (where Frappe's */0 fails) an extension: `@every Ns`, every N seconds since the epoch."""
    if scheduler_interval_s < 60:
        return f"@every {scheduler_interval_s}s"
    return f"*/{scheduler_interval_s // 60} * * * *"


_EVERY = re.compile(r"@every ([0-9]+)s")


def _every_s(cron: str) -> int | None:
    """N for the sub-minute `@every Ns` that all_cron makes (never accepted from hooks), else None."""
    match = _EVERY.fullmatch(cron)
    return int(match[1]) if match else None


def site_event_cron(event: str, cron: str, site: str, scheduler_interval_s: int) -> str:
    """The cron a scheduled job runs on in `site`: `all` by the interval, maintenance at the site's offset."""
    base = event.removesuffix("_long")
    if base == "all":
        return all_cron(scheduler_interval_s)
    if event == "hourly_maintenance":
        return f"{maintenance_offset_min(site)} * * * *"
    if event == "daily_maintenance":
        return f"{maintenance_offset_min(site)} 0 * * *"
    return cron


UTC = timezone.utc
ONE_MINUTE = timedelta(minutes=1)
ONE_MICROSECOND = timedelta(microseconds=1)
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
WEEKDAY_NUMBERS = {name[:3].lower(): number for number, name in enumerate(WEEKDAYS)}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@cache
def zone_info(zone: str) -> ZoneInfo:
    """The ZoneInfo for an IANA zone name, built once per process."""
    return ZoneInfo(zone)


def latest_slot(cron: str, now: datetime, zone: str) -> datetime:
    """The latest slot at or before aware `now`, in UTC. With croniter's seconds field, the latest of its
    seconds at or before now: a job due several times within one tick fires once, for the latest."""
    if every_s := _every_s(cron):
        return datetime.fromtimestamp(int(_aware(now).timestamp()) // every_s * every_s, UTC)
    spec = parse_cron(cron)
    minute = _latest_minute(spec, now, zone)
    if spec.seconds == (0,):
        return minute
    due = [minute + timedelta(seconds=second) for second in spec.seconds if minute + timedelta(seconds=second) <= now]
    if due:
        return due[-1]
    return _latest_minute(spec, minute - ONE_MICROSECOND, zone) + timedelta(seconds=spec.seconds[-1])


def next_slot(cron: str, now: datetime, zone: str) -> datetime:
    """The first slot strictly after aware `now`, in UTC (show-schedule's "next run")."""
    if every_s := _every_s(cron):
        return latest_slot(cron, now, zone) + timedelta(seconds=every_s)
    spec = parse_cron(cron)
    if spec.seconds != (0,):
        minute = _latest_minute(spec, now, zone)
        for second in spec.seconds:
            if minute + timedelta(seconds=second) > now:
                return minute + timedelta(seconds=second)
    return _next_minute(spec, now, zone) + timedelta(seconds=spec.seconds[0])


def _latest_minute(spec: CronSpec, now: datetime, zone: str) -> datetime:
    """The latest matching minute at or before aware `now`, in UTC, by Vixie cron's DST rules."""
    tz = zone_info(zone)
    wall, reach = _wall_and_reach(_aware(now), tz)
    # Walk back from one repeat-width past now's wall time: when now is in the second pass of a repeated
    # hour, first-pass times later on the clock are still in the past.
    cursor = wall.replace(second=0, microsecond=0) + reach + ONE_MINUTE
    best: datetime | None = None
    while True:
        cursor = spec.prev_before(cursor)
        for instant in _instants(cursor, tz, spec.wildcard):
            if instant <= now and (best is None or instant > best):
                best = instant
        if best is not None and cursor <= wall:
            return best


def _next_minute(spec: CronSpec, now: datetime, zone: str) -> datetime:
    """The first matching minute strictly after aware `now`, in UTC, by Vixie cron's DST rules."""
    tz = zone_info(zone)
    wall, reach = _wall_and_reach(_aware(now), tz)
    # Mirror of _latest_minute: in the first pass of a repeated hour, earlier clock times recur later.
    cursor = wall.replace(second=0, microsecond=0) - reach - ONE_MINUTE
    best: datetime | None = None
    while True:
        cursor = spec.next_after(cursor)
        for instant in _instants(cursor, tz, spec.wildcard):
            if instant > now and (best is None or instant < best):
                best = instant
        if best is not None and cursor > wall:
            return best


def recent_slots(cron: str, now: datetime, zone: str, count: int, tick_s: int | None = None) -> list[datetime]:
    """The `count` latest slots at or before aware `now`, oldest first, in UTC (what `why` explains). With the
    scheduler's `tick_s`, only the slots its ticks fire: a seconds cron due several times within one tick
    fires once per tick, for the latest of them."""

    def tick_at_or_before(instant: datetime) -> datetime:
        if not tick_s:
            return instant
        return datetime.fromtimestamp(int(instant.timestamp()) // tick_s * tick_s, timezone.utc)

    slots = [latest_slot(cron, tick_at_or_before(now), zone)]
    while len(slots) < count:  # the tick before a slot's fires the latest slot at or before its boundary
        slots.append(latest_slot(cron, tick_at_or_before(slots[-1] - timedelta(microseconds=1)), zone))
    return slots[::-1]


@dataclass
class SlotCalculator:
    """Latest slots for one scheduler tick, computed once per distinct (cron, zone)."""

    now: datetime
    _memo: dict[tuple[str, str], datetime] = field(default_factory=dict, init=False, repr=False)

    def latest(self, cron: str, zone: str) -> datetime:
        """latest_slot(cron, self.now, zone), memoised."""
        key = (cron, zone)
        if key not in self._memo:
            self._memo[key] = latest_slot(cron, self.now, zone)
        return self._memo[key]


def describe_cron(cron: str) -> str:
    """The cron in words ("every day at 00:00"), or 'cron "<expr>"' for shapes it does not know."""
    if every_s := _every_s(cron):
        return f"every {every_s} seconds"
    fields = AT_FORMS.get(cron.strip(), cron).lower().split()
    words = None
    if len(fields) == 6 and fields[:5] == ["*"] * 5 and (step := _step(fields[5].replace("0/", "*/", 1))):
        words = _every(step, "second")
    elif len(fields) == 5 or fields[5] == "0":
        words = _describe_fields(*fields[:5])
    return words or f'cron "{cron}"'


def due_more_than_once_per_tick(cron: str, tick_interval_s: int) -> bool:
    """True when croniter's seconds field makes `cron` due more than once within some tick: it then fires
    once per tick, for the latest of those slots (what show-schedule tells the user)."""
    if _every_s(cron):
        return False
    seconds = parse_cron(cron).seconds
    gaps = [later - earlier for earlier, later in pairwise(seconds)] + [60 - seconds[-1] + seconds[0]]
    return min(gaps) < tick_interval_s


def _aware(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now.isoformat()}")
    return now


def _offset(moment: datetime) -> timedelta:
    return moment.utcoffset() or timedelta(0)


def _wall_and_reach(now: datetime, tz: ZoneInfo) -> tuple[datetime, timedelta]:
    """Now's local wall-clock time, and how far the clock repeats around it (zero outside a fall-back)."""
    wall = now.astimezone(tz).replace(tzinfo=None)
    reach = abs(_offset(wall.replace(tzinfo=tz, fold=0)) - _offset(wall.replace(tzinfo=tz, fold=1)))
    return wall, reach


def _instants(wall: datetime, tz: ZoneInfo, wildcard: bool) -> list[datetime]:
    """The UTC instants at which local `wall` time is a slot, by Vixie cron's DST rules."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if _offset(first) == _offset(second):
        return [first.astimezone(UTC)]
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        # Repeated by fall-back: wildcard jobs run in both passes, fixed-time jobs only in the first.
        return [first.astimezone(UTC), second.astimezone(UTC)] if wildcard else [first.astimezone(UTC)]
    # Skipped by spring-forward: wildcard jobs just have no slot, fixed-time jobs run as the gap ends.
    return [] if wildcard else [_gap_end(first, second, tz)]


def _gap_end(first: datetime, second: datetime, tz: ZoneInfo) -> datetime:
    """The instant a spring-forward gap ends, found by bisecting between a gap time's two readings."""
    before, after = int(second.timestamp()), int(first.timestamp())
    offset_after = _offset(datetime.fromtimestamp(after, tz))
    while after - before > 1:
        middle = (before + after) // 2
        if _offset(datetime.fromtimestamp(middle, tz)) == offset_after:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _describe_fields(minute: str, hour: str, day: str, month: str, weekday: str) -> str | None:
    if (day, month, weekday) == ("*", "*", "*"):
        if hour == "*" and minute == "*":
            return "every minute"
        if hour == "*" and (step := _step(minute)):
            return _every(step, "minute")
        if hour == "*" and minute.isdigit():
            return f"every hour at :{int(minute):02d}"
        if (step := _step(hour)) and minute.isdigit():
            return f"{_every(step, 'hour')} at :{int(minute):02d}"
    if not (minute.isdigit() and hour.isdigit()):
        return None
    clock = f"{int(hour):02d}:{int(minute):02d}"
    if (day, month, weekday) == ("*", "*", "*"):
        return f"every day at {clock}"
    if (day, month) == ("*", "*") and (days := _weekday_words(weekday)):
        return f"every {days} at {clock}" if days in WEEKDAYS else f"at {clock} on {days}"
    if weekday == "*" and day.isdigit() and month == "*":
        return f"on day {int(day)} of every month at {clock}"
    if weekday == "*" and day.isdigit() and month.isdigit() and 1 <= int(month) <= 12:
        return f"every year on {int(day)} {MONTHS[int(month) - 1]} at {clock}"
    return None


def _step(text: str) -> int | None:
    match = re.fullmatch(r"\*/(\d+)", text)
    return int(match[1]) if match else None


def _every(step: int, unit: str) -> str:
    return f"every {unit}" if step == 1 else f"every {step} {unit}s"


def _weekday_words(text: str) -> str | None:
    """'Sunday' for one day, 'Mon-Fri' or 'Mon,Wed,Fri' for several, None for steps and other shapes."""
    parts: list[list[int]] = []
    for part in text.split(","):
        ends = [_weekday_number(end) for end in part.split("-")]
        if len(ends) > 2 or None in ends:
            return None
        parts.append([end for end in ends if end is not None])
    if len(parts) == 1 and len(parts[0]) == 1:
        return WEEKDAYS[parts[0][0]]
    return ",".join("-".join(WEEKDAYS[end][:3] for end in part) for part in parts)


def _weekday_number(text: str) -> int | None:
    if text.isdigit() and int(text) <= 7:
        return int(text) % 7
    return WEEKDAY_NUMBERS.get(text)
