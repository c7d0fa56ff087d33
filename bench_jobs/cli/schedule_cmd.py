"""`schedule`, `trigger-scheduler-event` and `show-schedule`."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import typer

from . import state


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _short(moment: datetime | None, with_zone: bool) -> str:
    """A table cell: month-day hour:minute in the site's zone (its abbreviation when sites are mixed)."""
    return moment.strftime("%m-%d %H:%M %Z" if with_zone else "%m-%d %H:%M") if moment else "-"


def schedule(
    once: bool = typer.Option(False, "--once", help="Run a single tick now and exit (for system cron / CronJob)."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print what the tick did as JSON."),
) -> int:
    """Run the scheduler: tick on wall-clock boundaries of scheduler_tick_interval, firing each due job once.

    Run it on as many hosts as you like: one holds the leader lease and ticks, the others take over within
    two ticks if it dies. SIGTERM/SIGINT stop it cleanly (the lease is released).

    With --once, exit 1 when a site has problems (a broken hook or config); the other jobs still fire.

    Examples:

    \b
      bench-jobs schedule
      bench-jobs schedule --once --json
    """
    if as_json and not once:
        from ..errors import ConfigError

        raise ConfigError("--json goes with --once: the scheduler loop logs what each tick does.")
    level = logging.DEBUG if state.options.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    found = state.bench()
    if not once:
        from ..scheduler.loop import run_scheduler

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


def trigger_scheduler_event(
    event: str = typer.Argument(
        ...,
        help="all, hourly, daily, weekly, monthly, yearly, annual, the *_long variants, hourly_maintenance, "
        "daily_maintenance, cron, cron_long; or the dotted path of one scheduled job.",
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

    jobs, left_out = trigger(found, sites, event, connect_checked(load_bench_settings(found)))
    for note in left_out:
        state.error_console().print(f"Warning: not queued: {note}", markup=False)
    rows = [{"id": j.id, "site": j.site, "method": j.method, "queue": j.queue, "event": j.event} for j in jobs]
    if as_json:
        state.print_json({"jobs": rows})
        return
    out = state.console()
    if not rows:
        out.print(f"No {event} jobs in {', '.join(sites)}.")
    for row in rows:
        out.print(f"{row['id']}  {row['site']}  {row['method']}  ({row['queue']})")


def show_schedule(
    as_json: bool = typer.Option(False, "--json", help="Print the schedule as JSON."),
) -> None:
    """List each scheduled job: event, method, queue, cron in words, last run and status, next run (in the
    site's time zone).

    Examples:

    \b
      bench-jobs --site all show-schedule
      bench-jobs --site site1.local show-schedule --json
    """
    from datetime import timezone

    from ..core.config import load_bench_settings
    from ..core.connection import connect_checked
    from ..scheduler.view import read_schedule

    found = state.bench()
    sites = state.sites(found)
    rows = read_schedule(found, sites, connect_checked(load_bench_settings(found)), datetime.now(timezone.utc))
    if as_json:
        state.print_json({"jobs": [_row_json(row) for row in rows]})
        return
    from rich.table import Table

    many = len(sites) > 1
    zone = rows[0].timezone if rows and not many else ""
    table = Table(title=None if many else f"Schedule of {sites[0]} (times in {zone or 'the site zone'})")
    if many:
        table.add_column("site", overflow="fold")
    table.add_column("event", no_wrap=True)
    table.add_column("method", overflow="fold", ratio=3, min_width=20)
    table.add_column("queue", no_wrap=True)
    table.add_column("when", ratio=2)
    for column in ("last run", "status", "next run"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        site = [row.site + ("" if row.enabled else " (off)")] if many else []
        table.add_row(
            *site,
            row.event,
            row.method,
            row.queue,
            row.cron_words,
            _short(row.last_run, many),
            row.last_status or "-",
            _short(row.next_run, many),
        )
    if not many and rows and not rows[0].enabled:
        state.console().print(f"The scheduler of {sites[0]} is off (disabled or in maintenance).")
    state.console().print(table)


def _row_json(row: Any) -> dict[str, Any]:
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
        "last_status": row.last_status,
        "last_job_id": row.last_job_id,
        "next_run": _when(row.next_run),
    }


def register(app: typer.Typer) -> None:
    app.command("schedule")(schedule)
    app.command("trigger-scheduler-event")(trigger_scheduler_event)
    app.command("show-schedule")(show_schedule)
