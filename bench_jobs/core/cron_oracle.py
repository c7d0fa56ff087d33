"""croniter as the Frappe oracle: where Frappe, which reads every cron string with croniter, would fire a cron
string at other times than bench-jobs (Debian/Vixie cron's reading, cron_syntax) does. `0 9-9 * * *` runs
hourly under croniter and daily at 09:00 under cron; `0 0 */2 * 1` runs on odd days or Mondays under croniter,
on odd Mondays under cron. So that a migration from Frappe never changes a schedule silently, doctor and
`show-schedule --verbose` name the first instant at which the two differ.

Both sides are compared in naive wall time, as Frappe computes a job's next execution; daylight saving is
bench-jobs' own (Vixie cron's rules, documented apart) and is left out of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache

from croniter import croniter

from .cron import zone_info
from .cron_syntax import AT_FORMS, CronSpec, parse_cron

ORACLE_HORIZON = timedelta(days=366)  # how far ahead doctor compares: a year covers every month and weekday
DENSE_FIRES = 60  # at most this many fires, over an hour at most, compared one by one before the walk moves on
ONE_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class FrappeDifference:
    """The first instant (naive wall time in the site's zone) that one reading fires at and the other does not;
    `at` is None when croniter refuses the cron string outright (`refusal` says why)."""

    cron: str
    at: datetime | None
    frappe_fires: bool  # True: croniter fires at `at` and bench-jobs does not; False: the reverse
    refusal: str = ""

    def words(self, zone: str) -> str:
        """One line for doctor and show-schedule, the instant in `zone`'s wall time."""
        if self.at is None:
            return f'cron "{self.cron}": croniter refuses it ({self.refusal}), so Frappe would not run it'
        when = self.at.strftime("%Y-%m-%d %H:%M:%S" if self.at.second else "%Y-%m-%d %H:%M") + f" ({zone})"
        if self.frappe_fires:
            return f'cron "{self.cron}": Frappe (croniter) would also fire it at {when}, bench-jobs does not'
        return f'cron "{self.cron}": bench-jobs fires it at {when}, Frappe (croniter) would not'


def frappe_difference(
    cron: str, now: datetime, zone: str, horizon: timedelta = ORACLE_HORIZON
) -> FrappeDifference | None:
    """Where croniter's reading of `cron` first differs from bench-jobs' from the start of now's local day
    (in `zone`) over `horizon`, or None when they fire at the same times. Cached per cron string and day."""
    today = now.astimezone(zone_info(zone)).date()
    return _first_difference(cron, datetime.combine(today, time()) - timedelta(seconds=1), horizon)


@lru_cache(maxsize=1024)
def _first_difference(cron: str, start: datetime, horizon: timedelta) -> FrappeDifference | None:
    """Walk both readings from naive `start`, comparing each one's next fire: fire by fire for the first hour
    of fires (DENSE_FIRES at most), then each hour's first fire for a day, then each day's first fire. Both
    readings take the minute, hour and day fields apart (the same minutes in every hour they run, the same
    hours on every day), so a difference shows in those first fires, and a year costs a few hundred steps. A
    cron whose day, month and weekday fields are all `*` runs every day under both: its walk stops after a day."""
    spec = parse_cron(cron)
    end = start + horizon
    if AT_FORMS.get(cron.strip(), cron).split()[2:5] == ["*", "*", "*"]:
        end = min(end, start + timedelta(days=1, seconds=1))
    try:
        frappe = croniter(cron, start)
    except (ValueError, KeyError) as exc:
        return FrappeDifference(cron, None, True, refusal=str(exc) or type(exc).__name__)
    cursor, compared, dense_until = start, 0, end
    while cursor < end:
        if cursor != frappe.get_current(datetime):
            frappe.set_current(cursor, force=True)
        theirs = frappe.get_next(datetime)
        ours = _next_wall(spec, cursor)
        if theirs != ours:
            first = min(theirs, ours)
            return FrappeDifference(cron, first, first == theirs) if first < end else None
        compared += 1
        dense_until = min(dense_until, ours + ONE_HOUR)
        if compared < DENSE_FIRES and ours < dense_until:
            cursor = ours
        elif ours < start + timedelta(days=1):
            cursor = ours.replace(minute=59, second=59)
        else:
            cursor = datetime.combine(ours.date(), time(23, 59, 59))
    return None


def _next_wall(spec: CronSpec, moment: datetime) -> datetime:
    """bench-jobs' first fire strictly after naive wall time `moment`, seconds field included."""
    floor = moment.replace(second=0, microsecond=0)
    if spec.matches_minute(floor):
        for second in spec.seconds:
            if floor + timedelta(seconds=second) > moment:
                return floor + timedelta(seconds=second)
    return spec.next_after(moment) + timedelta(seconds=spec.seconds[0])
