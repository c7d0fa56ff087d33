"""Cron strings read exactly as Debian/Vixie cron reads them: parsing, validation and matching wall times.

The grammar is Vixie cron's (ISC cron 4.1, as Debian ships it): five fields, names for months and weekdays,
`*`, numbers, ranges `a-b` (a <= b), steps after `*` or a range, comma lists, weekday 7 = Sunday, the `@`
forms but `@reboot`, and the day rule: when the day-of-month or the weekday field starts with `*` both must
match, otherwise either. Extensions, from croniter (which Frappe apps write): `N/step` (from N to the field's
end), `L` (last day of the month) in the day field, `dL` (last weekday d of the month) and `d#n` (its n-th)
in the weekday field, and a sixth field read as croniter reads it: seconds (`* * * * * 0/5`). Parsing and
matching are our own, so no cron library's reading can widen a range.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

ONE_MINUTE = timedelta(minutes=1)
ONE_DAY = timedelta(days=1)
AT_FORMS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (name, low, high, names or None, first name's number)
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, MONTH_NAMES),
    ("day of week", 0, 7, DAY_NAMES),
    ("second", 0, 59, None),
)
SEARCH_DAYS = 146097  # the Gregorian calendar (weekdays included) repeats every 400 years


class CronError(ValueError):
    """A cron string that cron would refuse, or one that never matches a real date."""


@dataclass(frozen=True)
class CronSpec:
    """One parsed cron string: the values each field allows, and the day rule that joins the two day fields."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    last_day: bool = False  # `L` in the day field
    last_weekdays: frozenset[int] = frozenset()  # `5L`: the month's last Friday
    nth_weekdays: frozenset[tuple[int, int]] = frozenset()  # `5#2`: the month's second Friday
    either_day: bool = True  # neither day field starts with `*`: either one matching is enough
    seconds: tuple[int, ...] = (0,)  # croniter's sixth field; a 5-field cron runs at second 0

    @property
    def wildcard(self) -> bool:
        """Vixie cron's MIN_STAR|HR_STAR: a minute or hour field starting with `*` (DST rules differ)."""
        minute, hour = self.expression.split()[:2]
        return minute.startswith("*") or hour.startswith("*")

    def matches_day(self, day: date) -> bool:
        """True when the job runs on `day` (its month and both day fields, by Vixie cron's day rule)."""
        if day.month not in self.months:
            return False
        month_days = calendar.monthrange(day.year, day.month)[1]
        weekday = (day.weekday() + 1) % 7
        by_day = day.day in self.days or (self.last_day and day.day == month_days)
        by_weekday = (
            weekday in self.weekdays
            or (weekday in self.last_weekdays and day.day + 7 > month_days)
            or (weekday, (day.day - 1) // 7 + 1) in self.nth_weekdays
        )
        return by_day or by_weekday if self.either_day else by_day and by_weekday

    def matches_minute(self, wall: datetime) -> bool:
        """True when naive wall time `wall`'s minute is one the job runs in."""
        return wall.minute in self.minutes and wall.hour in self.hours and self.matches_day(wall.date())

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after naive wall time `moment`."""
        start = moment.replace(second=0, microsecond=0) + ONE_MINUTE
        day, first = start.date(), start.hour * 60 + start.minute
        for _ in range(SEARCH_DAYS + 1):
            if self.matches_day(day):
                for minute_of_day in self._day_minutes():
                    if minute_of_day >= first:
                        return datetime.combine(day, datetime.min.time()) + timedelta(minutes=minute_of_day)
            day, first = day + ONE_DAY, 0
        raise CronError(f"{self.expression!r} never matches a real date")

    def prev_before(self, moment: datetime) -> datetime:
        """The last matching minute strictly before naive wall time `moment`."""
        floor = moment.replace(second=0, microsecond=0)
        last = floor.hour * 60 + floor.minute - (1 if floor == moment else 0)
        day = floor.date()
        for _ in range(SEARCH_DAYS + 1):
            if self.matches_day(day):
                for minute_of_day in reversed(self._day_minutes()):
                    if minute_of_day <= last:
                        return datetime.combine(day, datetime.min.time()) + timedelta(minutes=minute_of_day)
            day, last = day - ONE_DAY, 24 * 60
        raise CronError(f"{self.expression!r} never matches a real date")

    def _day_minutes(self) -> tuple[int, ...]:
        return _day_minutes(self.hours, self.minutes)


@lru_cache(maxsize=1024)
def _day_minutes(hours: tuple[int, ...], minutes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(hour * 60 + minute for hour in hours for minute in minutes)


@lru_cache(maxsize=1024)
def parse_cron(expression: str) -> CronSpec:
    """The CronSpec of a cron string; CronError saying what cron would object to."""
    text = expression.strip()
    if text.startswith("@"):
        if text == "@reboot":
            raise CronError(
                "@reboot runs once when cron starts; a scheduler has no such moment "
                "(run it from your process manager, or use @hourly/@daily)"
            )
        if text not in AT_FORMS:
            raise CronError(f"unknown @ form; known: {', '.join(AT_FORMS)}")
        text = AT_FORMS[text]
    fields = text.split()
    if len(fields) not in (5, 6):
        raise CronError(
            "a cron string has 5 fields (minute hour day month weekday), or 6 with croniter's seconds last; "
            f"this one has {len(fields)}"
        )
    parsed = [_parse_field(value, *spec) for value, spec in zip(fields, _FIELDS, strict=False)]
    minutes, hours, days, months, weekdays = (values for values, _ in parsed[:5])
    extras = parsed[2][1] | parsed[4][1]
    spec = CronSpec(
        expression=text,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(day % 7 for day in weekdays),
        last_day="L" in extras,
        last_weekdays=frozenset(int(e[:-1]) % 7 for e in extras if e.endswith("L") and e != "L"),
        nth_weekdays=frozenset((int(d) % 7, int(n)) for d, _, n in (e.partition("#") for e in extras if "#" in e)),
        either_day=not (fields[2].startswith("*") or fields[4].startswith("*")),
        seconds=tuple(sorted(parsed[5][0])) if len(parsed) == 6 else (0,),
    )
    spec.next_after(CRON_CHECK_FROM)  # CronError when no date ever matches (31 February)
    return spec


_NUMBER = re.compile(r"[0-9]+|[A-Za-z]{3}")


def _parse_field(text: str, name: str, low: int, high: int, names: tuple[str, ...] | None) -> tuple[set[int], set[str]]:
    """The values one field allows, and its `L`/`#` extension elements (kept apart, they depend on the month)."""
    values: set[int] = set()
    extras: set[str] = set()
    for element in text.split(","):
        if name == "day of month" and element == "L":
            extras.add("L")
            continue
        if name == "day of week" and (re.fullmatch(r"[0-7](L|#[1-5])", element)):
            extras.add(element)
            continue
        values |= _parse_element(element, name, low, high, names)
    return values, extras


def _parse_element(element: str, name: str, low: int, high: int, names: tuple[str, ...] | None) -> set[int]:
    head, slash, step_text = element.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronError(f"{name} field: {element!r}: a step is a whole number greater than 0")
        step = int(step_text)
    if head == "*":
        first, last = low, high
    elif "-" in head:
        start_text, _, end_text = head.partition("-")
        first, last = _number(start_text, name, low, high, names), _number(end_text, name, low, high, names)
        if first > last:
            raise CronError(f"{name} field: {element!r}: a range runs from low to high ({last}-{first}?)")
    else:
        first = _number(head, name, low, high, names)
        # Vixie cron refuses a step after a single number; croniter (and Frappe's own hooks) read `0/15` as 0-59/15.
        last = high if slash else first
    return set(range(first, last + 1, step))


def _number(text: str, name: str, low: int, high: int, names: tuple[str, ...] | None) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if names is MONTH_NAMES else 0)
    if not text.isdigit() or not low <= int(text) <= high:
        allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
        raise CronError(f"{name} field: {text!r} is not {allowed}")
    return int(text)


CRON_CHECK_FROM = datetime(2024, 1, 1)  # a fixed start, so a cron string's verdict never depends on the clock


def cron_problem(expression: object) -> str | None:
    """Why `expression` is not a cron string Debian cron (plus the documented extensions) would run, or None."""
    if not isinstance(expression, str):
        return f"a cron string must be text, not {type(expression).__name__}"
    try:
        parse_cron(expression)
    except CronError as exc:
        message = str(exc)
        if "never matches" in message:
            return "never matches a real date (such as 31 February); check the day and month fields"
        return message if message.startswith("@reboot") else f"not a valid cron expression: {message}"
    return None
