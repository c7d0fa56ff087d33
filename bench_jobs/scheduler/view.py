"""Read model of `show-schedule` and the core of `trigger-scheduler-event`: no printing here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
from rq.job import Job

from ..core.allowlist import site_app_callable
from ..core.bench import Bench
from ..core.config import SiteSettings, load_site_settings
from ..core.cron import describe_cron, due_more_than_once_per_tick, maintenance_offset_min, next_slot, zone_info
from ..core.cron_oracle import frappe_difference
from ..core.hooks import CRON_EVENTS, KNOWN_EVENTS, MAINTENANCE_EVENTS, ScheduledJob, add_bench_apps_to_path
from ..core.keys import Keys
from ..errors import ConfigError, JobError
from ..jobs import history as history
from ..jobs.enqueue import build_job
from ..jobs.push import PendingJob, send
from .tick import site_jobs


@dataclass(frozen=True)
class ScheduleRow:
    """One scheduled job of one site; times are in the site's zone, `last_run` is the slot it last fired."""

    site: str
    event: str
    method: str
    queue: str
    cron: str
    cron_words: str
    timezone: str
    enabled: bool
    last_run: datetime | None
    last_status: str | None
    last_job_id: str | None
    next_run: datetime
    frappe_note: str | None = None  # with compare_frappe: where Frappe (croniter) would fire it otherwise


@dataclass(frozen=True)
class TriggeredJob:
    id: str
    site: str
    method: str
    queue: str
    event: str


def slot_of_run(job_id: str) -> datetime | None:
    """The slot a scheduled run's job id names (keys.scheduled_job_id ends in `-<slot epoch>`)."""
    tail = job_id.rpartition("-")[2]
    return datetime.fromtimestamp(int(tail), timezone.utc) if tail.isdigit() else None


def read_schedule(
    bench: Bench, sites: Sequence[str], conn: redis.Redis | None, now: datetime, compare_frappe: bool = False
) -> list[ScheduleRow]:
    """Every scheduled job of `sites` with its last run and status and its next run after `now`. Without
    Redis (`conn` None) the next runs still come from the hooks and configs; last runs are unknown (None).
    With `compare_frappe`, each cron string Frappe (croniter) would fire at other times over the next year
    carries a note naming the first such instant."""
    settings = [load_site_settings(bench, site) for site in sites]
    keys = Keys(settings[0].bench.bench_id) if settings else Keys("")
    last_runs: list[dict[str, str]] = [{} for _ in sites]
    statuses: dict[str, str] = {}
    if conn is not None:
        with conn.pipeline(transaction=False) as pipe:
            for site in sites:
                pipe.hgetall(keys.last_runs(site))
            last_runs = [{k.decode(): v.decode() for k, v in reply.items()} for reply in pipe.execute()]
        run_ids = sorted({job_id for runs in last_runs for job_id in runs.values()})
        with conn.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hget(Job.key_for(run_id), "status")
            statuses = {run_id: s.decode() for run_id, s in zip(run_ids, pipe.execute(), strict=True) if s}
    rows = []
    for site_settings, runs in zip(settings, last_runs, strict=True):
        outcomes = _latest_outcomes(conn, keys, site_settings.name, set(runs.values()) - set(statuses)) if conn else {}
        zone = zone_info(site_settings.timezone)
        for job in site_jobs(site_settings)[0]:
            job_id = runs.get(job.key)
            last = slot_of_run(job_id) if job_id else None
            rows.append(
                ScheduleRow(
                    site=site_settings.name,
                    event=job.event,
                    method=job.method,
                    queue=job.queue,
                    cron=job.cron,
                    cron_words=_words(job, site_settings),
                    timezone=site_settings.timezone,
                    enabled=site_settings.scheduler_enabled and not site_settings.maintenance_mode,
                    last_run=last.astimezone(zone) if last else None,
                    last_status=(statuses.get(job_id) or outcomes.get(job_id)) if job_id else None,
                    last_job_id=job_id,
                    next_run=next_slot(job.cron, now, site_settings.timezone).astimezone(zone),
                    frappe_note=_frappe_note(job, now, site_settings.timezone) if compare_frappe else None,
                )
            )
    return rows


def _words(job: ScheduledJob, settings: SiteSettings) -> str:
    """The job's cron in words; a maintenance job says that its minute is the site's offset, and a cron due
    more than once within a tick (croniter's seconds field) that it runs once per tick."""
    words = describe_cron(job.cron)
    if job.event in MAINTENANCE_EVENTS:
        words += f" (this site's maintenance offset: {maintenance_offset_min(settings.name)} min)"
    tick_s = settings.bench.tick_interval_s
    if due_more_than_once_per_tick(job.cron, tick_s):
        words += f" (at most once per scheduler tick: every {tick_s} s)"
    return words


def _frappe_note(job: ScheduledJob, now: datetime, zone: str) -> str | None:
    """For a cron string the app wrote: where Frappe (croniter) would fire it at other times, or None."""
    if job.event not in CRON_EVENTS:
        return None
    difference = frappe_difference(job.cron, now, zone)
    return difference.words(zone) if difference else None


def _latest_outcomes(conn: redis.Redis, keys: Keys, site: str, job_ids: set[str]) -> dict[str, str]:
    """For runs whose RQ job has expired: their newest status in the site's history ('expired' if none)."""
    if not job_ids:
        return {}
    found: dict[str, str] = {}
    for entry in history.read(conn, keys, site):
        job_id = entry.get("job_id")
        if job_id in job_ids and job_id not in found:
            found[job_id] = entry["status"]
    return {job_id: found.get(job_id, "expired") for job_id in job_ids}


def select_jobs(settings: SiteSettings, event_or_method: str) -> tuple[list[ScheduledJob], list[str]]:
    """The site's jobs of an event (`daily`, `cron`, ...), or its scheduled job(s) with that method path;
    and why any entry of that event (or with that path) was left out: a broken hook entry, a method that
    does not import, or one a worker would refuse (not defined inside the site's apps). Checked here, with
    the worker's own check, so that trigger never queues a job bound to fail or to be refused."""
    jobs, problems = site_jobs(settings)
    is_event = event_or_method in KNOWN_EVENTS
    notes = [
        f"{settings.name}: {problem}"
        for problem in problems
        if (problem.event == event_or_method if is_event else problem.value == event_or_method)
    ]
    selected = []
    for job in jobs:
        if (job.event if is_event else job.method) != event_or_method:
            continue
        try:
            site_app_callable(job.method, settings.apps, settings.name)
        except ConfigError as exc:
            notes.append(f"{settings.name}: {job.app}.hooks {job.event}: {exc.message}")
            continue
        except JobError as exc:
            notes.append(f"{settings.name}: {job.app}.hooks {job.event}: refused {job.method!r}: {exc.message}")
            continue
        selected.append(job)
    return selected, notes


def trigger(
    bench: Bench,
    sites: Sequence[str],
    event_or_method: str,
    conn: redis.Redis,
    on_site: Callable[[], None] | None = None,
) -> tuple[list[TriggeredJob], list[str]]:
    """Enqueue now, in one round trip, each selected job of `sites`; the schedule's own state is left alone.
    Returns the jobs and the entries left out (broken or refused). ConfigError (exit 2) for a name that is
    neither an event nor a scheduled method of any of the sites; JobError (exit 1) when entries were left
    out and nothing was queued. `on_site` is called after each site's jobs are built (a progress bar)."""
    if event_or_method not in KNOWN_EVENTS and "." not in event_or_method:
        raise ConfigError(
            f"Unknown scheduler event {event_or_method!r}.",
            hint=f"Events: {', '.join(KNOWN_EVENTS)}; or the dotted path of one scheduled job.",
        )
    pending: list[PendingJob] = []
    triggered: list[TriggeredJob] = []
    left_out: list[str] = []
    for site in sites:
        settings = load_site_settings(bench, site)
        add_bench_apps_to_path(bench.apps_dir)
        selected, notes = select_jobs(settings, event_or_method)
        left_out += notes
        for job in selected:
            queue, rq_job = build_job(
                conn, settings, job.method, {}, queue=job.queue, timeout_s=job.timeout_s, event=job.event
            )
            pending.append(PendingJob(queue, rq_job, at_front=False, deduplicate=False))
            triggered.append(TriggeredJob(rq_job.id, site, job.method, job.queue, job.event))
        if on_site is not None:
            on_site()
    if not pending and not left_out and event_or_method not in KNOWN_EVENTS:
        raise ConfigError(
            f"{event_or_method!r} is not a scheduled job of {', '.join(sites)}.",
            hint="`bench-jobs show-schedule` lists the scheduled jobs; `execute` runs any function once.",
        )
    if not pending and left_out:
        raise JobError(
            f"Nothing queued for {event_or_method}: {'; '.join(left_out)}.",
            hint="A scheduled job must be a function defined in the site's apps that imports; "
            "fix the app's hooks.py (`bench-jobs doctor` lists broken hooks).",
        )
    send(conn, pending)
    return triggered, left_out
