"""`schedule`, `trigger-scheduler-event` and `show-schedule`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import typer

from . import state
from .completion import complete_event


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


AT_HELP = (
    "With --dry-run: the instant to look at. ISO 8601 with an offset (2026-03-29T03:00+02:00, ...Z) or a zone "
    "(2026-03-29T02:30 Europe/Berlin); a naive time (2026-03-29T02:30) is read in each site's own zone."
)


def schedule(
    once: bool = typer.Option(False, "--once", help="Run a single tick now and exit (for system cron / CronJob)."),
    as_json: bool = typer.Option(False, "--json", help="With --once or --dry-run: print the result as JSON."),
    at: str = typer.Option(None, "--at", metavar="TIME", help=AT_HELP),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what a tick at --at (default: now) would fire; write nothing to Redis."
    ),
) -> int:
    """Run the scheduler: tick on wall-clock boundaries of scheduler_tick_interval, firing each due job once.

    Run it on as many hosts as you like: one holds the leader lease and ticks, the others take over within
    two ticks if it dies. SIGTERM/SIGINT stop it cleanly (the lease is released).

    With --once, exit 1 when a site has problems (a broken hook or config); the other jobs still fire.

    With --dry-run, list what a tick at --at would fire on every site (or --site), in each site's zone, with
    the rule that makes each job due, whatever fired before; nothing is read from or written to Redis. Use it
    to check a daylight-saving night or a time-zone change before it happens.

    Examples:

    \b
      bench-jobs schedule
      bench-jobs schedule --once --json
      bench-jobs schedule --dry-run --at 2026-03-29T02:30
      bench-jobs --site site1.local schedule --dry-run --at "2026-10-25T02:00 Europe/Berlin" --json
    """
    from ..errors import ConfigError

    if dry_run:
        if once:
            raise ConfigError("--dry-run and --once do not go together: --dry-run fires nothing.")
        return _dry_run(at, as_json)
    if at is not None:
        raise ConfigError("--at goes with --dry-run.", hint="bench-jobs schedule --dry-run --at 2026-03-29T02:30")
    if as_json and not once:
        raise ConfigError("--json goes with --once or --dry-run: the scheduler loop logs what each tick does.")
    level = logging.DEBUG if state.options.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    found = state.bench()
    if not once:
        from ..scheduler.loop import run_scheduler

        for line in next_runs_lines(found, datetime.now(timezone.utc)):
            logging.getLogger("bench_jobs.scheduler.tick").info("%s", line)
        return run_scheduler(found)
    from ..scheduler.loop import run_once

    result = run_once(found)
    fired = [{"site": d.site, "method": d.job.method, "event": d.job.event, "id": d.job_id} for d in result.fired]
    skipped = [{"site": d.site, "method": d.job.method, "reason": d.reason} for d in result.skipped]
    code = 1 if result.problems else 0
    if as_json:
        state.print_json({"now": _when(result.now), "fired": fired, "skipped": skipped, "problems": result.problems})
        return code
    out = state.console()
    out.print(f"Tick at {_when(result.now)}: {len(fired)} fired, {len(skipped)} skipped ({result.duration_s:.3f} s)")
    for row in fired:
        out.print(f"  fired {row['site']} {row['method']} -> {row['id']}")
    for row in skipped:
        out.print(f"  skipped {row['site']} {row['method']}: {row['reason']}")
    for problem in result.problems:
        state.error_console().print(f"Warning: {problem}", markup=False)
    return code


NEXT_RUNS_SHOWN = 3  # per site, in the lines `schedule` (and so `start`) logs as it starts


def next_runs_lines(found: Any, now: datetime) -> list[str]:
    """Per site, its next few scheduled runs in its own zone, or why nothing will fire: what a newcomer waits
    for. A job the scheduler has not seen yet runs first at its next slot too (its first slot is only recorded)."""
    from ..core.config import load_bench_settings
    from ..errors import BenchJobsError
    from ..scheduler.view import read_schedule

    fmt = "%a %H:%M:%S" if load_bench_settings(found).tick_interval_s < 60 else "%a %H:%M"
    lines = []
    for site in found.site_names():
        try:
            rows = sorted(read_schedule(found, [site], None, now), key=lambda row: row.next_run)
        except BenchJobsError as exc:
            lines.append(f"{site}: schedule unreadable: {exc.message}")
            continue
        if not rows:
            lines.append(f"{site}: no scheduled jobs")
        elif not rows[0].enabled:
            lines.append(f"{site}: scheduler off (disabled or in maintenance): nothing fires")
        else:
            shown = ", ".join(f"{row.next_run.strftime(fmt)} {row.method}" for row in rows[:NEXT_RUNS_SHOWN])
            more = (
                f" (+{len(rows) - NEXT_RUNS_SHOWN} more: bench-jobs show-schedule)"
                if len(rows) > NEXT_RUNS_SHOWN
                else ""
            )
            lines.append(f"{site}: next runs ({rows[0].timezone}): {shown}{more}")
    return lines


def _dry_run(at: str | None, as_json: bool) -> int:
    """What a tick at `at` would fire, per site; exit 0 (1 when a site has hook problems)."""
    from datetime import timezone

    from ..scheduler.preview import GivenTime, parse_time, preview

    found = state.bench()
    sites = state.sites(found) if state.options.site is not None else found.site_names()
    given = parse_time(at) if at is not None else GivenTime("now", datetime.now(timezone.utc))
    previews = preview(found, sites, given)
    if as_json:
        state.print_json({"at": given.text, "sites": [_preview_json(p) for p in previews]})
    else:
        out = state.console()
        for site in previews:
            off = "" if site.fires else f" (scheduler {site.scheduler}: nothing would fire)"
            out.print(f"{site.site} at {_when(site.at)} ({site.timezone}){off}:", markup=False)
            if site.note:
                out.print(f"  note: {site.note}", markup=False)
            for job in site.jobs:
                rule = f"{job.event} {job.cron!r}: {job.cron_words}"
                out.print(f"  {job.method} ({job.queue}) - slot {_when(job.slot)}, {rule}", markup=False)
            if not site.jobs:
                out.print("  nothing due", markup=False)
    for site in previews:
        for problem in site.problems:
            state.error_console().print(f"Warning: {site.site}: {problem}", markup=False)
    return 1 if any(site.problems for site in previews) else 0


def _preview_json(site: Any) -> dict[str, Any]:
    return {
        "site": site.site,
        "timezone": site.timezone,
        "at": _when(site.at),
        "scheduler": site.scheduler,
        "fires": site.fires,
        "note": site.note,
        "problems": site.problems,
        "jobs": [
            {
                "event": job.event,
                "method": job.method,
                "queue": job.queue,
                "cron": job.cron,
                "cron_words": job.cron_words,
                "slot": _when(job.slot),
            }
            for job in site.jobs
        ],
    }


def trigger_scheduler_event(
    event: str = typer.Argument(
        ...,
        help="all, hourly, daily, weekly, monthly, yearly, annual, the *_long variants, hourly_maintenance, "
        "daily_maintenance, cron, cron_long; or the dotted path of one scheduled job.",
        autocompletion=complete_event,
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the enqueued jobs as JSON."),
) -> None:
    """Enqueue now every scheduled job of EVENT (or the one scheduled job with that method path) and print
    the job ids. The schedule itself is left alone: the next regular runs happen as planned.

    Examples:

    \b
      bench-jobs --site all trigger-scheduler-event daily
      bench-jobs --site site1.local trigger-scheduler-event demo_app.tasks.cleanup --json
    """
    from ..core.connection import connect_checked
    from ..scheduler.view import trigger

    found = state.bench()
    sites = state.sites(found)
    from ..core.config import load_bench_settings

    conn = connect_checked(load_bench_settings(found))
    with _site_progress(len(sites), f"Triggering {event}") as on_site:
        jobs, left_out = trigger(found, sites, event, conn, on_site)
    for note in left_out:
        state.error_console().print(f"Warning: not queued: {note}", markup=False)
    rows = [{"id": j.id, "site": j.site, "method": j.method, "queue": j.queue, "event": j.event} for j in jobs]
    if as_json:
        state.print_json({"jobs": rows})
        return
    out = state.console()
    if not rows:
        out.print(f"No {event} jobs in {', '.join(sites)}.")
        return
    from ..core.keys import site_job_prefix
    from .tables import short_ids

    bench_id = load_bench_settings(found).bench_id
    shown = {}
    for site in sites:
        shown.update(short_ids([row["id"] for row in rows if row["site"] == site], site_job_prefix(bench_id, site)))
    for row in rows:
        out.print(f"{shown[row['id']]}  {row['site']}  {row['method']}  ({row['queue']})", soft_wrap=False)
    with_jobs = len({row["site"] for row in rows})
    skipped = f", {len(left_out)} left out (see the warnings)" if left_out else ""
    out.print(f"Queued {len(rows)} {event} job(s) for {with_jobs} of {len(sites)} site(s){skipped}.")


PROGRESS_MIN_SITES = 20  # fewer sites than this go without a progress bar


@contextmanager
def _site_progress(total: int, what: str) -> Iterator[Callable[[], None] | None]:
    """A transient rich progress bar on stderr over `total` sites, only when stderr is a terminal."""
    err = state.error_console()
    if total < PROGRESS_MIN_SITES or not err.is_terminal:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda: progress.advance(task)


def show_schedule(
    as_json: bool = typer.Option(False, "--json", help="Print the schedule as JSON."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also say where Frappe (croniter) would fire a cron string at other times."
    ),
) -> int:
    """List each scheduled job: event, method, queue, cron in words, last run and status, next run (in the
    site's time zone; with seconds when the tick is under a minute). With several sites, one table per site.
    A cron string due several times within a tick (a seconds field) runs once per tick, and says so.

    With --verbose, a note under each table names every cron string that Frappe, which reads cron strings
    with croniter, would fire at other times over the next year, with the first such instant
    (`0 9-9 * * *` is hourly under croniter, daily at 09:00 here); under --json it is each job's frappe_note.

    When Redis does not answer, the next runs still show (they come from the hooks and configs), last runs
    show as unknown, and the command exits 3.

    Examples:

    \b
      bench-jobs --site all show-schedule
      bench-jobs --site site1.local show-schedule --json
      bench-jobs --site all show-schedule --verbose
    """
    from ..core.config import load_bench_settings
    from ..core.connection import connect_checked
    from ..errors import RedisUnavailable
    from ..scheduler.view import read_schedule

    found = state.bench()
    sites = state.sites(found)
    bench_settings = load_bench_settings(found)
    down: RedisUnavailable | None = None
    try:
        conn = connect_checked(bench_settings)
    except RedisUnavailable as exc:
        conn, down = None, exc
    compare = verbose or state.options.verbose
    rows = read_schedule(found, sites, conn, datetime.now(timezone.utc), compare_frappe=compare)
    seconds = bench_settings.tick_interval_s < 60 or any(len(row.cron.split()) == 6 for row in rows)
    if as_json:
        document: dict[str, Any] = {"jobs": [_row_json(row, known=down is None) for row in rows]}
        if down is not None:
            document["error"] = {"error": down.message, "hint": down.hint, "exit_code": down.exit_code}
        state.print_json(document)
    else:
        _print_schedule(rows, sites, seconds, known=down is None)
    if down is not None:
        err = state.error_console()
        err.print(f"Error: {down.message} (last runs unknown)", markup=False, soft_wrap=True)
        err.print(f"Hint: {down.hint}", markup=False, soft_wrap=True)
        return down.exit_code
    return 0


FIRST_SEEN_NOTE = (
    "A job with no last run (-) has not fired yet: the slot in which the scheduler first sees a job is "
    "recorded, not run, so it first runs at its next run."
)


def _print_schedule(rows: list[Any], sites: list[str], seconds: bool, known: bool) -> None:
    """One table per site under a title naming its zone (and whether its scheduler is off)."""
    from .tables import table, title

    out = state.console()
    fmt = "%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M"
    for site in sites:
        site_rows = [row for row in rows if row.site == site]
        if not site_rows:
            out.print(f"{site}: no scheduled jobs.")
            continue
        off = "" if site_rows[0].enabled else "; scheduler off: disabled or in maintenance"
        title(f"Schedule of {site} (times in {site_rows[0].timezone}{off})")
        grid = table()
        # The event and its cron in words share a column; the method keeps its width where it can (a path
        # folded anywhere reads badly); three spaces between columns.
        dates_w = 2 * len(datetime.now().strftime(fmt)) + 9  # last and next run, and 3 gaps of 3
        method_w = min(max(len(row.method) for row in site_rows), max(20, out.width - dates_w - 14))
        grid.add_column("event / when", overflow="fold", max_width=max(12, out.width - dates_w - method_w))
        grid.add_column("method (queue)", overflow="ellipsis", max_width=method_w)  # never cut mid-word
        grid.add_column("last run", no_wrap=True)
        grid.add_column("next run", no_wrap=True)
        for row in site_rows:
            method = row.method if row.queue == "default" else f"{row.method}\n({row.queue})"
            if not known:
                last = "unknown"
            elif row.last_run is None:
                last = "-"
            else:
                last = f"{row.last_run.strftime(fmt)}\n{row.last_status or '-'}"
            grid.add_row(f"{row.event}\n{row.cron_words}", method, last, row.next_run.strftime(fmt))
        out.print(grid)
        if known and site_rows[0].enabled and any(row.last_run is None for row in site_rows):
            out.print(FIRST_SEEN_NOTE, soft_wrap=False)
        for note in sorted({row.frappe_note for row in site_rows if row.frappe_note}):
            out.print(f"Frappe reads it otherwise: {note}", markup=False, soft_wrap=False)
        out.print("")


def _row_json(row: Any, known: bool = True) -> dict[str, Any]:
    """One row; without Redis (`known` false) last_status is "unknown" and last_run null."""
    return {
        "site": row.site,
        "event": row.event,
        "method": row.method,
        "queue": row.queue,
        "cron": row.cron,
        "cron_words": row.cron_words,
        "timezone": row.timezone,
        "scheduler_enabled": row.enabled,
        "last_run": _when(row.last_run),
        "last_status": row.last_status if known else "unknown",
        "last_job_id": row.last_job_id,
        "next_run": _when(row.next_run),
        "frappe_note": row.frappe_note,
    }
