"""Pure cron and time-zone arithmetic: the only module that imports croniter."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, CroniterError, croniter

# Frappe's CRON_MAP. `all` has no cron: it fires on every scheduler tick.
EVENT_CRONS: dict[str, str | None] = {
    "all": None,
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
    "annual": "0 0 1 1 *",
}


CRON_CHECK_FROM = datetime(2024, 1, 1)  # a fixed start, so a cron string's verdict never depends on the clock


def cron_problem(expression: object) -> str | None:
    """Why `expression` is not a valid 5-field cron string, or None when it is. Looks for one time before
    and one after a fixed date, because a well-formed string such as "0 0 31 2 *" may never match a date."""
    if not isinstance(expression, str):
        return f"a cron string must be text, not {type(expression).__name__}"
    fields = expression.split()
    if len(fields) != 5:
        return f"a cron string has 5 fields (minute hour day month weekday), this one has {len(fields)}"
    if not croniter.is_valid(expression):
        return "not a valid cron expression"
    try:
        croniter(expression, CRON_CHECK_FROM).get_prev(datetime)
        croniter(expression, CRON_CHECK_FROM).get_next(datetime)
    except CroniterBadDateError:
        return "never matches a real date (such as 31 February); check the day and month fields"
    except CroniterError as exc:
        return f"not a valid cron expression: {exc}"
    return None


UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MINUTE = timedelta(minutes=1)
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
WEEKDAY_NUMBERS = {name[:3].lower(): number for number, name in enumerate(WEEKDAYS)}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@cache
def zone_info(zone: str) -> ZoneInfo:
    """The ZoneInfo for an IANA zone name, built once per process."""
    return ZoneInfo(zone)


def latest_slot(cron: str | None, now: datetime, zone: str, tick_interval_s: int) -> datetime:
    """The latest slot at or before aware `now`, in UTC; cron None (`all`) is every tick since the epoch."""
    if cron is None:
        return EPOCH + _tick(tick_interval_s) * ((_aware(now) - EPOCH) // _tick(tick_interval_s))
    tz = zone_info(zone)
    wall, reach = _wall_and_reach(_aware(now), tz)
    wildcard = _is_wildcard(cron)
    # Walk back from one repeat-width past now's wall time: when now is in the second pass of a repeated
    # hour, first-pass times later on the clock are still in the past.
    cursor = croniter(cron, wall.replace(second=0, microsecond=0) + reach + ONE_MINUTE)
    best: datetime | None = None
    while True:
        candidate: datetime = cursor.get_prev(datetime)
        for instant in _instants(candidate, tz, wildcard):
            if instant <= now and (best is None or instant > best):
                best = instant
        if best is not None and candidate <= wall:
            return best


def next_slot(cron: str | None, now: datetime, zone: str, tick_interval_s: int) -> datetime:
    """The first slot strictly after aware `now`, in UTC (show-schedule's "next run")."""
    if cron is None:
        return latest_slot(None, now, zone, tick_interval_s) + _tick(tick_interval_s)
    tz = zone_info(zone)
    wall, reach = _wall_and_reach(_aware(now), tz)
    wildcard = _is_wildcard(cron)
    # Mirror of latest_slot: in the first pass of a repeated hour, earlier clock times recur later.
    cursor = croniter(cron, wall.replace(second=0, microsecond=0) - reach - ONE_MINUTE)
    best: datetime | None = None
    while True:
        candidate: datetime = cursor.get_next(datetime)
        for instant in _instants(candidate, tz, wildcard):
            if instant > now and (best is None or instant < best):
                best = instant
        if best is not None and candidate > wall:
            return best


@dataclass
class SlotCalculator:
    """Latest slots for one scheduler tick, computed once per distinct (cron, zone)."""

    now: datetime
    tick_interval_s: int
    _memo: dict[tuple[str | None, str], datetime] = field(default_factory=dict, init=False, repr=False)

    def latest(self, cron: str | None, zone: str) -> datetime:
        """latest_slot(cron, self.now, zone, self.tick_interval_s), memoised."""
        key = (cron, zone if cron is not None else "")
        if key not in self._memo:
            self._memo[key] = latest_slot(cron, self.now, zone, self.tick_interval_s)
        return self._memo[key]


def describe_cron(cron: str | None, tick_interval_s: int) -> str:
    """The cron in words ("every day at 00:00"), or 'cron "<expr>"' for shapes it does not know."""
    if cron is None:
        return f"every tick ({tick_interval_s} s)"
    fields = cron.lower().split()
    words = _describe_fields(*fields) if len(fields) == 5 else None
    return words or f'cron "{cron}"'


def _aware(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now.isoformat()}")
    return now


def _tick(tick_interval_s: int) -> timedelta:
    if tick_interval_s <= 0:
        raise ValueError(f"tick_interval_s must be positive, got {tick_interval_s}")
    return timedelta(seconds=tick_interval_s)


def _offset(moment: datetime) -> timedelta:
    return moment.utcoffset() or timedelta(0)


def _wall_and_reach(now: datetime, tz: ZoneInfo) -> tuple[datetime, timedelta]:
    """Now's local wall-clock time, and how far the clock repeats around it (zero outside a fall-back)."""
    wall = now.astimezone(tz).replace(tzinfo=None)
    reach = abs(_offset(wall.replace(tzinfo=tz, fold=0)) - _offset(wall.replace(tzinfo=tz, fold=1)))
    return wall, reach


def _is_wildcard(cron: str) -> bool:
    """Vixie cron's MIN_STAR|HR_STAR: a minute or hour field starting with `*` makes a wildcard job."""
    minute, hour = cron.split()[:2]
    return minute.startswith("*") or hour.startswith("*")


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
