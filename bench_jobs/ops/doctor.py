"""`doctor`: every health check as a named result with detail and hint. Checks return values, never print,
and use counts and samples so that a bench with 100,000 queued jobs answers in well under a second."""

from __future__ import annotations

import stat
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, cast

import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.utils import parse_composite_key

from ..core.bench import Bench
from ..core.config import (
    BenchSettings,
    SiteSettings,
    likely_typos,
    load_bench_settings,
    load_site_settings,
    read_toml,
    typo_message,
    zone_exists,
)
from ..core.config_edit import holds_secret
from ..core.connection import connect_checked
from ..core.hooks import CRON_EVENTS, ScheduledJob, load_site_hooks
from ..core.keys import Keys, bench_job_prefix, site_job_prefix
from ..errors import BenchJobsError, RedisUnavailable
from ..jobs.fair import site_loads
from ..jobs.listings import QueueStats, queue_stats
from ..jobs.queues import queue_order, rq_queue
from ..scheduler.clock import CLOCK_SKEW_LIMIT_S, RedisClock, read_clock, skew_problem
from ..scheduler.leader import clock_offsets, live_processes, read_heartbeat
from .checks import Check, DoctorReport
from .code_checks import stale_code_check
from .redis_checks import redis_checks, suspension_check
from .replication_checks import replication_checks
from .rq_users import rq_user_check
from .schedule_checks import stuck_schedule_check

STUCK_GRACE_S = 60  # RQ kills a horse at its timeout; past this margin it is stuck beyond RQ's reach


def run_doctor(
    bench: Bench, sites: list[str], now: datetime | None = None, stats: list[QueueStats] | None = None
) -> DoctorReport:
    """Every check for the bench and the given sites; RedisUnavailable (exit 3) when Redis does not answer.
    The scheduler's heartbeats carry Redis's time, so without `now` they are judged by Redis's clock. `stats`:
    the queues' counts at `now` when the caller has just read them (the dashboard's overview), else read here."""
    asked_now, now = now, now or datetime.now(timezone.utc)
    settings = load_bench_settings(bench)
    report = DoctorReport()
    try:
        conn: redis.Redis | None = connect_checked(settings)
    except RedisUnavailable as exc:  # the checks that need no Redis still run; the report says Redis is down
        report.checks.append(Check("redis", False, exc.message, exc.hint or ""))
        report.exit_code = exc.exit_code
        conn = None
    if conn is not None:
        report.checks += redis_checks(conn)
        report.checks += replication_checks(conn, settings)
        report.checks += filter(None, [rq_user_check(conn, settings.common)])
        clock = read_clock(conn)
        report.checks += _scheduler_checks(conn, settings, asked_now or clock.now)
        report.checks.append(_clock_check(conn, settings, clock, asked_now or clock.now))
        report.checks.append(suspension_check(conn))
    site_settings: dict[str, SiteSettings] = {}
    for site in sites:
        try:
            site_settings[site] = load_site_settings(bench, site)
        except BenchJobsError as exc:
            report.checks.append(Check(f"config:{site}", False, exc.message, exc.hint or ""))
    for current in site_settings.values():
        report.checks += _site_checks(current, now)
    if conn is not None:
        stats = queue_stats(conn, settings, now) if stats is None else stats  # one read for both checks
        report.checks += _queue_checks(conn, settings, stats, now)
        report.checks.append(stale_code_check(conn, bench, settings, now, stats))
        report.checks += _failed_checks(conn, settings, list(site_settings))
        report.checks += _cap_checks(conn, settings, list(site_settings.values()))
        report.checks.append(stuck_schedule_check(conn, settings, list(site_settings)))
    report.checks.append(_secrets_check(bench, list(site_settings)))
    report.checks.append(_config_keys_check(bench, list(site_settings)))
    return report


def _scheduler_checks(conn: redis.Redis, settings: BenchSettings, now: datetime) -> list[Check]:
    keys = Keys(settings.bench_id)
    beat = read_heartbeat(conn, keys)
    processes = live_processes(conn, keys, now, settings.tick_interval_s)
    if beat is None:
        return [
            Check(
                "scheduler",
                False,
                "no scheduler has ever ticked on this Redis",
                "Start it: `bench-jobs schedule` (a Procfile, supervisor or systemd process).",
            )
        ]
    age_s = (now - datetime.fromisoformat(beat["at"])).total_seconds()
    fresh = age_s <= 2 * settings.tick_interval_s
    lag = beat.get("tick_lag_s")
    detail = (
        f"last tick {age_s:.0f} s ago by {beat.get('host')}:{beat.get('pid')} (leader)"
        + (f", tick lag {lag:.2f} s" if isinstance(lag, (int, float)) else "")
        + f", {processes} scheduler process(es) alive"
    )
    hint = (
        ""
        if fresh
        else ("The scheduler stopped (heartbeat older than two ticks): start `bench-jobs schedule` and check its log.")
    )
    return [Check("scheduler", fresh, detail, hint)]


def _clock_check(conn: redis.Redis, settings: BenchSettings, clock: RedisClock, now: datetime) -> Check:
    """This host's clock and each live scheduler process's (from its heartbeat) against Redis's. A warning:
    the scheduler runs on Redis's clock, but workers time retries and delayed jobs by their own."""
    offsets = {"this host (doctor)": clock.offset_s}
    for process, offset_s in clock_offsets(conn, Keys(settings.bench_id), now, settings.tick_interval_s).items():
        offsets[f"scheduler process {process}"] = offset_s
    problems = [problem for name, offset_s in offsets.items() if (problem := skew_problem(name, offset_s))]
    if problems:
        hint = "Sync the clocks (NTP, chrony, systemd-timesyncd) of the hosts named, and of Redis's."
        return Check("clock", True, "; ".join(problems), hint, warning=True)
    return Check(
        "clock",
        True,
        f"within {CLOCK_SKEW_LIMIT_S:.0f} s of Redis's: this host ({clock.offset_s:+.3f} s) and "
        f"{len(offsets) - 1} scheduler process(es)",
    )


def _site_checks(settings: SiteSettings, now: datetime) -> list[Check]:
    site = settings.name
    checks = []
    if not settings.scheduler_enabled:
        checks.append(
            Check(
                f"scheduler-enabled:{site}",
                False,
                "the scheduler is disabled for this site",
                f"bench-jobs --site {site} enable-scheduler",
            )
        )
    elif settings.maintenance_mode:
        checks.append(
            Check(
                f"scheduler-enabled:{site}",
                False,
                "the site is in maintenance mode: nothing fires",
                "Set maintenance_mode = false when maintenance is over.",
            )
        )
    elif settings.bench.scheduler_paused:  # a deliberate pause: reported, never paged on
        checks.append(
            Check(
                f"scheduler-enabled:{site}",
                True,
                "the bench's scheduler is paused (pause_scheduler): nothing fires",
                "bench-jobs scheduler resume",
                warning=True,
            )
        )
    else:
        checks.append(Check(f"scheduler-enabled:{site}", True, "scheduler enabled"))
    ok_zone = zone_exists(settings.timezone)
    checks.append(
        Check(
            f"timezone:{site}",
            ok_zone,
            f"time zone {settings.timezone}",
            "" if ok_zone else "Use an IANA name such as Europe/Berlin.",
        )
    )
    hooks = load_site_hooks(settings.apps, settings.bench.queues)
    problems = hooks.problems
    checks.append(
        Check(
            f"hooks:{site}",
            not problems,
            f"{len(hooks.scheduled)} scheduled job(s) from {len(settings.apps)} app(s)"
            if not problems
            else "; ".join(str(problem) for problem in problems[:5])
            + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""),
            "" if not problems else "Fix the paths and cron strings named above in the apps' hooks.py.",
        )
    )
    checks.append(_frappe_cron_check(site, hooks.scheduled, settings.timezone, now))
    return checks


def _frappe_cron_check(site: str, jobs: Iterable[ScheduledJob], zone: str, now: datetime) -> Check:
    """A warning naming each app's cron string that Frappe (croniter) would fire at other times over the next
    year than bench-jobs does, with the first instant they differ: a move from Frappe never changes silently."""
    written = sorted({(job.app, job.cron) for job in jobs if job.event in CRON_EVENTS})
    if written and zone_exists(zone):
        from ..core.cron_oracle import frappe_difference  # croniter: imported only for a site with cron strings

        found = [(app, diff) for app, cron in written if (diff := frappe_difference(cron, now, zone))]
    else:
        found = []
    if not found:
        return Check(f"frappe-cron:{site}", True, f"{len(written)} cron string(s) fire as Frappe (croniter) fires them")
    return Check(
        f"frappe-cron:{site}",
        True,
        "; ".join(f"{app}: {diff.words(zone)}" for app, diff in found),
        "bench-jobs reads cron strings as Debian cron does; where Frappe (croniter) reads them otherwise, write "
        "the schedule you mean so both agree (`0 9 * * *` for `0 9-9 * * *`), or keep bench-jobs' reading.",
        warning=True,
    )


def _queue_checks(
    conn: redis.Redis, settings: BenchSettings, every_stats: list[QueueStats], now: datetime
) -> list[Check]:
    checks = []
    for stats in every_stats:
        serving = len(stats.workers)
        ok = stats.queued == 0 or serving > 0
        checks.append(
            Check(
                f"workers:{stats.name}",
                ok,
                f"{stats.queued} queued, {serving} live worker(s)",
                "" if ok else f"Start one: bench-jobs worker --queue {stats.name}",
            )
        )
    queues = [rq_queue(conn, settings, name) for name in queue_order(settings)]
    checks.append(_stuck_check(conn, queues, now))
    return checks


def _stuck_check(conn: redis.Redis, queues: Iterable[Any], now: datetime) -> Check:
    keys = [StartedJobRegistry(queue=queue).key for queue in queues]
    members = [parse_composite_key(m)[0] for ids in _members(conn, keys) for m in ids]
    with conn.pipeline(transaction=False) as pipe:
        for job_id in members:
            pipe.hmget(Job.key_for(job_id), "started_at", "timeout", "status")
        rows = pipe.execute()
    stuck = []
    for job_id, (started_at, timeout, status) in zip(members, rows, strict=True):
        if status != b"started" or not started_at or not timeout:
            continue
        started = datetime.fromisoformat(started_at.decode().replace("Z", "+00:00"))
        running_s = (now - started).total_seconds()
        if running_s > float(timeout) + STUCK_GRACE_S:
            stuck.append(f"{job_id} ({running_s:.0f} s, timeout {float(timeout):.0f} s)")
    return Check(
        "stuck-jobs",
        not stuck,
        f"{len(members)} job(s) running, none past its timeout"
        if not stuck
        else f"{len(stuck)} job(s) running past their timeout: {', '.join(stuck[:5])}",
        ""
        if not stuck
        else "Its work-horse ignores the timeout signal: restart that worker; the job is then retried or failed.",
    )


def _members(conn: redis.Redis, keys: list[str]) -> list[list[str]]:
    """The members of each sorted set, in one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrange(key, 0, -1)
        return [[m.decode() for m in members] for members in cast(list[list[bytes]], pipe.execute())]


def _failed_checks(conn: redis.Redis, settings: BenchSettings, sites: list[str]) -> list[Check]:
    checks = []
    names = queue_order(settings)
    failed = _members(conn, [FailedJobRegistry(queue=rq_queue(conn, settings, name)).key for name in names])
    for name, ids in zip(names, failed, strict=True):
        prefixes = {site: site_job_prefix(settings.bench_id, site) for site in sites}
        per_site = {site: sum(job_id.startswith(prefix) for job_id in ids) for site, prefix in prefixes.items()}
        failing = {site: count for site, count in per_site.items() if count}
        # Failed jobs no site of the bench made (pushed by another tool, or of a removed site): show-queue
        # counts them, so doctor does too; `--site all show-failed-jobs` lists them.
        bench_prefix = bench_job_prefix(settings.bench_id)
        others = sum(not job_id.startswith(bench_prefix) for job_id in ids)
        shown = ", ".join(f"{site}: {count}" for site, count in failing.items())
        if others:
            shown += (", " if shown else "") + f"{others} not made by bench-jobs"
        clean = not failing and not others
        site = _one_or_all(list(failing)) if failing and not others else "all"
        # Failed jobs are kept for job_failure_ttl (days): by default a warning, so a monitor does not page
        # for a week on one failure; doctor_failed_jobs = "error" makes them fail doctor.
        as_error = settings.doctor_failed_jobs == "error"
        checks.append(
            Check(
                f"failed-jobs:{name}",
                clean or not as_error,
                f"failed jobs: {shown or 'none'}",
                "" if clean else f"See them: bench-jobs --site {site} show-failed-jobs",
                warning=not clean and not as_error,
            )
        )
    return checks


def _cap_checks(conn: redis.Redis, settings: BenchSettings, sites: list[SiteSettings]) -> list[Check]:
    """Each capped site's running jobs against its max_concurrent_jobs; a warning while jobs wait on it."""
    capped = [site.name for site in sites if site.max_concurrent_jobs]
    checks = []
    for load in site_loads(conn, settings.bench_id, capped, list(settings.queues)) if capped else []:
        waiting = load.at_cap and load.queued > 0
        checks.append(
            Check(
                f"cap:{load.site}",
                True,
                f"{load.running} of max_concurrent_jobs {load.cap} running, {load.queued} queued",
                "Its jobs wait while it is at its cap, other sites' go on; raise max_concurrent_jobs in its "
                "site_config.toml if they wait too long."
                if waiting
                else "",
                warning=waiting,
            )
        )
    return checks


def _one_or_all(sites: list[str]) -> str:
    """The --site a hint names: the one failing site, or `all` when several fail."""
    return sites[0] if len(sites) == 1 else "all"


def _secrets_check(bench: Bench, sites: list[str]) -> Check:
    paths = [bench.common_config_path, *(bench.site_config_path(site) for site in sites)]
    exposed = []
    for path in paths:
        try:
            mode = path.stat().st_mode
            if mode & stat.S_IROTH and any(holds_secret(k, v) for k, v in read_toml(path).items()):
                exposed.append(str(path))
        except (OSError, BenchJobsError):
            continue
    return Check(
        "config-permissions",
        not exposed,
        "no world-readable config file holds a password"
        if not exposed
        else f"world-readable config with a password: {', '.join(exposed)}",
        "" if not exposed else f"chmod 640 {' '.join(exposed)}",
    )


def _config_keys_check(bench: Bench, sites: list[str]) -> Check:
    """A warning for keys that look like misspelt known keys: the loader ignores them, as custom keys."""
    paths = [bench.common_config_path, *(bench.site_config_path(site) for site in sites)]
    found = []
    for path in paths:
        try:
            found += [(path, key, meant) for key, meant in likely_typos(read_toml(path))]
        except BenchJobsError:
            continue
    if not found:
        return Check("config-keys", True, "no misspelt keys in the config files")
    return Check(
        "config-keys",
        True,
        "; ".join(typo_message(path, key, meant) for path, key, meant in found),
        "Rename each key as suggested (a misspelt key is ignored, so its setting has no effect).",
        warning=True,
    )
