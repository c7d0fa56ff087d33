"""`schedule --at TIME --dry-run`: what a tick at an instant would fire on each site, in the site's zone, and
the rule that makes each job due. Reads hooks and configs only: nothing is read from or written to Redis."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..core.bench import Bench
from ..core.config import load_bench_settings, load_site_settings
from ..core.cron import describe_cron, latest_slot, zone_info
from ..core.hooks import add_bench_apps_to_path
from ..errors import ConfigError
from .status import SchedulerStatus
from .tick import site_jobs

# `2026-03-29T02:30 Europe/Berlin` or `2026-03-29T02:30[Europe/Berlin]` (RFC 9557's suffix)
_ZONED = re.compile(r"(?P<time>[^\s\[]+)(?:\s+(?P<zone>\S+)|\[(?P<bracketed>[^\]]+)\])")


@dataclass(frozen=True)
class GivenTime:
    """TIME as the operator wrote it: an instant (with an offset or a zone) or a wall time (naive)."""

    text: str
    moment: datetime  # aware, or naive: read in each site's zone

    def in_zone(self, zone: str) -> tuple[datetime, str | None]:
        """The instant in `zone`, and a note when a naive wall time does not exist there (skipped by a
        spring-forward: read with the offset before the change, as zoneinfo does) or happens twice (the
        first pass is taken)."""
        if self.moment.tzinfo is not None:
            return self.moment, None
        tz = zone_info(zone)
        first, second = self.moment.replace(tzinfo=tz, fold=0), self.moment.replace(tzinfo=tz, fold=1)
        if first.utcoffset() == second.utcoffset():
            return first, None
        if first.astimezone(timezone.utc).astimezone(tz).replace(tzinfo=None) != self.moment:
            at = first.astimezone(timezone.utc).astimezone(tz).isoformat(timespec="seconds")
            return first, f"{self.moment:%Y-%m-%d %H:%M} does not exist in {zone} (clocks spring forward): read as {at}"
        return first, f"{self.moment:%Y-%m-%d %H:%M} happens twice in {zone} (clocks fall back): the first is shown"


def parse_time(text: str) -> GivenTime:
    """ISO 8601 with an offset (`2026-03-29T03:00+02:00`, `...Z`), with a zone name after a space or in
    brackets, or naive (each site's zone). ConfigError (exit 2) naming the accepted forms otherwise."""
    raw, zone = text.strip(), None
    match = _ZONED.fullmatch(raw)
    if match:
        raw, zone = match["time"], match["zone"] or match["bracketed"]
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        moment = None
    if moment is None or (zone and moment.tzinfo is not None):
        raise ConfigError(
            f"Cannot read the time {text!r}.",
            hint="Give ISO 8601 with an offset (2026-03-29T03:00+02:00, 2026-03-29T01:00Z), with a zone "
            "(2026-03-29T02:30 Europe/Berlin), or a wall time (2026-03-29T02:30), read in each site's zone.",
        )
    if zone:
        try:
            tz = zone_info(zone)
        except (ValueError, KeyError, OSError) as exc:
            raise ConfigError(f"Unknown time zone {zone!r}.", hint="Use an IANA name such as Europe/Berlin.") from exc
        return GivenTime(text, GivenTime(text, moment).in_zone(zone)[0].astimezone(tz))
    return GivenTime(text, moment)


@dataclass(frozen=True)
class DueJob:
    """A job a tick at the instant would fire, and the slot and rule that make it due."""

    event: str
    method: str
    queue: str
    cron: str
    cron_words: str
    slot: datetime  # in the site's zone


@dataclass(frozen=True)
class SitePreview:
    site: str
    timezone: str
    at: datetime  # the instant, in the site's zone
    scheduler: str  # enabled, disabled, maintenance or paused: only `enabled` fires
    jobs: list[DueJob] = field(default_factory=list)
    note: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def fires(self) -> bool:
        return self.scheduler == "enabled"


def preview(bench: Bench, sites: Sequence[str], given: GivenTime) -> list[SitePreview]:
    """Per site, the jobs whose latest slot at the instant falls within the tick ending there (so the tick at
    that instant fires them), whatever was fired before; the site's scheduler state says whether it would."""
    bench_settings = load_bench_settings(bench)
    tick = timedelta(seconds=bench_settings.tick_interval_s)
    add_bench_apps_to_path(bench.apps_dir)
    found = []
    for site in sites:
        settings = load_site_settings(bench, site)
        at, note = given.in_zone(settings.timezone)
        zone = zone_info(settings.timezone)
        scheduler = SchedulerStatus(
            site, settings.scheduler_enabled, settings.maintenance_mode, bench_settings.scheduler_paused
        ).status
        jobs, problems = site_jobs(settings)
        due = []
        for job in jobs:
            slot = latest_slot(job.cron, at, settings.timezone)
            if slot > at - tick:
                due.append(
                    DueJob(job.event, job.method, job.queue, job.cron, describe_cron(job.cron), slot.astimezone(zone))
                )
        problem_texts = [str(problem) for problem in problems]
        found.append(
            SitePreview(
                site,
                settings.timezone,
                at.astimezone(timezone.utc).astimezone(zone),
                scheduler,
                due,
                note,
                problem_texts,
            )
        )
    return found
