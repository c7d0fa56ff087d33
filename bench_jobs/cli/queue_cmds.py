"""Queue commands: show-queue, show-pending-jobs, show-failed-jobs, purge-jobs, requeue-failed-jobs.

Each parses its options, calls the core (`bench_jobs.jobs.listings`, `bench_jobs.jobs.purge`) and renders the result as
a rich table or as one JSON document. Imports of Redis, RQ and rich stay inside the functions so `--help`
stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import typer

from . import state

if TYPE_CHECKING:
    import redis

    from ..core.bench import Bench
    from ..core.config import BenchSettings
    from ..jobs.listings import JobSummary

PROGRESS_MIN_JOBS = 1000  # fewer jobs than this go without a progress bar

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")
YES_OPTION = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
QUEUE_HELP = "Comma-separated queues (default: every queue of the bench)."
NARROW_COLUMNS = 80  # below this width show-queue abbreviates its headers
SHORT_HEADERS = {"started": "run", "orphaned": "orph", "finished": "done", "scheduled": "sched", "workers": "wkrs"}


def _connect() -> tuple[Bench, BenchSettings, redis.Redis]:
    from ..core.config import load_bench_settings
    from ..core.connection import connect_checked

    found = state.bench()
    settings = load_bench_settings(found)
    return found, settings, connect_checked(settings)


def _queues(text: str | None) -> list[str] | None:
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    return names or None


def _limit(limit: int) -> int | None:
    from ..errors import ConfigError

    if limit < 0:
        raise ConfigError(f"--limit must be 0 (no limit) or more, not {limit}.")
    return limit or None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _age(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else _duration((now - moment).total_seconds())


def _duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    for unit_s, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if whole >= unit_s:
            return f"{whole // unit_s}{unit}"
    return f"{whole}s"


def _job_json(job: JobSummary) -> dict[str, Any]:
    return {key: _iso(value) if isinstance(value, datetime) else value for key, value in asdict(job).items()}


def show_queue(as_json: bool = JSON_OPTION) -> None:
    """Show every queue of the bench: queued, started (and orphaned), failed, finished, scheduled and
    deferred jobs, and the live workers serving it; then each site with jobs queued or a
    `max_concurrent_jobs` cap: its queued jobs, and its running jobs against its cap.

    Example:

    \b
      bench-jobs show-queue --json
    """
    from ..jobs.fair import site_loads
    from ..jobs.listings import queue_stats
    from ..jobs.queues import queue_order

    found, settings, conn = _connect()
    if state.options.site:
        state.sites(found)  # bench-wide, but an unknown --site is still a usage error
    stats = queue_stats(conn, settings, datetime.now(timezone.utc))
    loads = [
        load
        for load in site_loads(conn, settings.bench_id, found.site_names(), queue_order(settings))
        if load.cap or load.queued
    ]
    if as_json:
        rows = [{**asdict(row), "workers": len(row.workers), "worker_names": list(row.workers)} for row in stats]
        sites = [{**asdict(load), "at_cap": load.at_cap} for load in loads]
        state.print_json({"queues": rows, "sites": sites})
        return
    from .tables import site_load_table, table, title

    out = state.console()
    title(f"Queues of bench {settings.bench_id}")
    grid = table()
    # No "deferred" column: bench-jobs jobs have no dependencies, so RQ defers none (--json still counts them).
    columns = ("queue", "queued", "started", "orphaned", "failed", "finished", "scheduled", "workers")
    narrow = out.width < NARROW_COLUMNS  # short headers, so the queue names keep their column
    for column in columns:
        if column == "queue":
            grid.add_column(column, no_wrap=True, min_width=max((len(row.name) for row in stats), default=5))
        else:
            grid.add_column(SHORT_HEADERS.get(column, column) if narrow else column, justify="right", no_wrap=True)
    for row in stats:
        counts = (row.queued, row.started, row.orphaned, row.failed, row.finished, row.scheduled)
        grid.add_row(row.name, *map(str, counts), str(len(row.workers)))
    out.print(grid)
    if narrow:
        out.print(", ".join(f"{short}: {column}" for column, short in SHORT_HEADERS.items()), soft_wrap=False)
    if loads:
        out.print(site_load_table(loads))
    deferred = sum(row.deferred for row in stats)
    if deferred:
        out.print(
            f"{deferred} deferred job(s) (made by another tool: bench-jobs jobs have no dependencies).", soft_wrap=False
        )


def show_pending_jobs(
    queue: str = typer.Option(None, "--queue", "-q", help=QUEUE_HELP),
    limit: int = typer.Option(100, "--limit", "-n", help="Show at most this many jobs (0: all)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the site's pending jobs: running (or orphaned: its worker died), queued, and scheduled (retries and
    delayed jobs, with their due time).

    Example:

    \b
      bench-jobs --site site1.local show-pending-jobs --queue long --limit 20
    """
    from ..jobs.listings import pending_jobs

    found, settings, conn = _connect()
    sites = state.sites(found)
    jobs = pending_jobs(conn, settings, sites, _queues(queue), _limit(limit))
    if as_json:
        state.print_json({"jobs": [_job_json(job) for job in jobs]})
        return
    from ..core.keys import site_job_prefix
    from .tables import short_ids, table, title

    now = datetime.now(timezone.utc)
    out = state.console()
    if not jobs:
        out.print(f"No pending jobs of {', '.join(sites)}.", soft_wrap=False)
    for site, site_jobs in _by_site(jobs, sites):
        prefix = site_job_prefix(settings.bench_id, site) if site else ""
        title(f"Pending jobs of {site or 'no site of this bench'}: {len(site_jobs)}" + _id_note(prefix))
        grid = table()
        grid.add_column("id", no_wrap=True)
        grid.add_column("queue", overflow="fold")
        grid.add_column("status, age", overflow="fold")
        grid.add_column("method / job name", overflow="ellipsis", ratio=1)  # a path is never cut mid-word
        shown = short_ids([job.id for job in site_jobs], prefix)
        for job in site_jobs:
            status = job.status
            if job.scheduled_for:
                status += f", due in {_duration((job.scheduled_for - now).total_seconds())}"
            grid.add_row(shown[job.id], job.queue, f"{status}, {_age(job.enqueued_at, now)}", _what(job))
        out.print(grid)
        out.print("")
    if limit and len(jobs) >= limit:
        out.print(f"Showing the first {limit}; pass --limit 0 for all.", soft_wrap=False)


def _by_site(jobs: list[JobSummary], sites: list[str]) -> list[tuple[str | None, list[JobSummary]]]:
    """The jobs per site, in the order of `sites` (jobs of no known site last), sites without jobs left out."""
    groups: dict[str | None, list[JobSummary]] = {}
    for job in jobs:
        groups.setdefault(job.site if job.site in sites else None, []).append(job)
    order: list[str | None] = [*sites, None]
    return [(site, groups[site]) for site in order if site in groups]


def _id_note(prefix: str) -> str:
    return f" (ids shortened: each full id starts with {prefix}; --job-id takes the short one)" if prefix else ""


def _what(job: JobSummary) -> str:
    """The method, and the job name on a line of its own when it says something else; each one line (a
    newline in a name shows as `\n`, so a name cannot pass for another job's row)."""
    from ..core.text import one_line

    method = one_line(job.method or "?")
    return method if not job.job_name or job.job_name == job.method else f"{method}\n{one_line(job.job_name)}"


def show_failed_jobs(
    queue: str = typer.Option(None, "--queue", "-q", help=QUEUE_HELP),
    job_id: str = typer.Option(None, "--job-id", help="Show this job in full, with its traceback."),
    limit: int = typer.Option(100, "--limit", "-n", help="Show at most this many jobs (0: all)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the site's failed jobs, newest first, with the last line of each error; --job-id shows one job
    with its full traceback.

    Example:

    \b
      bench-jobs --site site1.local show-failed-jobs --job-id mybench-site1_2elocal--0f8c0b6c1f4e4f7d9b1f2a3c4d5e6f70
    """
    from ..core.text import one_line
    from ..jobs.listings import failed_jobs

    found, settings, conn = _connect()
    sites = state.sites(found)
    if job_id:
        _show_failed_job(conn, settings, sites, job_id, as_json)
        return
    jobs = failed_jobs(conn, settings, sites, _queues(queue), _limit(limit), foreign=state.every_site(found))
    if as_json:
        state.print_json({"jobs": [_job_json(job) for job in jobs]})
        return
    from ..core.keys import site_job_prefix
    from .tables import short_ids, table, title

    now = datetime.now(timezone.utc)
    out = state.console()
    if not jobs:
        out.print(f"No failed jobs of {', '.join(sites)}.", soft_wrap=False)
    for site, site_jobs in _by_site(jobs, sites):
        prefix = site_job_prefix(settings.bench_id, site) if site else ""
        title(
            f"Failed jobs of {site or 'no site of this bench (not made by bench-jobs)'}: {len(site_jobs)}"
            + _id_note(prefix)
        )
        grid = table()
        grid.add_column("id", no_wrap=True)
        grid.add_column("queue", overflow="fold")
        grid.add_column("failed", no_wrap=True)
        grid.add_column("method / job name / error", overflow="ellipsis", ratio=1)
        shown = short_ids([job.id for job in site_jobs], prefix)
        for job in site_jobs:
            failed = f"{_age(job.ended_at, now)} ago" if job.ended_at else "-"
            error = f"\n{one_line(job.error)}" if job.error else ""
            grid.add_row(shown[job.id], job.queue, failed, _what(job) + error)
        out.print(grid)
        out.print("")
    if jobs:
        site = jobs[0].site if jobs[0].site in sites else sites[0]
        out.print(f"Full traceback: bench-jobs --site {site} show-failed-jobs --job-id ID", soft_wrap=False)


def _show_failed_job(conn: redis.Redis, settings: BenchSettings, sites: list[str], job_id: str, as_json: bool) -> None:
    from ..jobs.listings import check_job_of, job_detail
    from .tables import full_job_id

    job_id = full_job_id(conn, settings, sites, job_id)
    check_job_of(settings.bench_id, sites, job_id)
    detail = job_detail(conn, settings, job_id)
    if as_json:
        extra = {"kwargs": detail.kwargs, "timeout_s": detail.timeout_s, "retries_left": detail.retries_left}
        state.print_json({"job": {**_job_json(detail.summary), **extra, "traceback": detail.traceback}})
        return
    out = state.console()
    summary = detail.summary
    for label, value in (
        ("id", summary.id),
        ("site", summary.site),
        ("queue", summary.queue),
        ("method", summary.method),
        ("job name", summary.job_name),
        ("status", summary.status),
        ("enqueued at", _iso(summary.enqueued_at)),
        ("ended at", _iso(summary.ended_at)),
        ("kwargs", detail.kwargs),
    ):
        out.print(f"{label + ':':<13}{value if value not in (None, '') else '-'}", markup=False)
    out.print("")
    out.print(detail.traceback or "No traceback recorded.", markup=False)


def _confirm(question: str, yes: bool) -> bool:
    return state.confirm(question, yes, "Refusing to change jobs without confirmation")


def _aborted(what: str) -> int:
    """The user answered no: say that nothing changed (on stdout too as JSON under --json); exit 1."""
    from ..errors import EXIT_FAILED

    message = f"Aborted: nothing {what}."
    state.error_console().print(message)
    if state.options.json:
        state.print_json({"error": message, "hint": None, "exit_code": EXIT_FAILED})
    return EXIT_FAILED


@contextmanager
def _progress(total: int, what: str) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr for `total` jobs (none for a few), as a callback taking a batch size."""
    if total < PROGRESS_MIN_JOBS:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=state.error_console(), transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda done: progress.advance(task, done)


def purge_jobs(
    queue: str = typer.Option(None, "--queue", "-q", help=QUEUE_HELP),
    event: str = typer.Option(None, "--event", help="Only jobs fired by this scheduler event (daily, cron, ...)."),
    failed: bool = typer.Option(False, "--failed", help="Purge the site's failed jobs instead of pending ones."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Delete nothing; report how many jobs would go."),
    yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION,
) -> int:
    """Delete the site's queued and scheduled jobs (only that site's; running jobs are left to finish), or
    with --failed its failed jobs. Asks first unless --yes; without a terminal, --yes is required.

    Example:

    \b
      bench-jobs --site site1.local purge-jobs --queue long --event daily --yes
    """
    from ..jobs.purge import plan_purge, purge

    found, settings, conn = _connect()
    sites = state.sites(found)
    plan = plan_purge(conn, settings, sites, _queues(queue), event, failed, foreign=state.every_site(found))
    kind = "failed" if failed else "pending"
    what = f"{plan.total} {kind} job(s) of {', '.join(sites)}"
    out = state.console()
    if dry_run:
        if as_json:
            state.print_json({"purged": 0, "would_purge": plan.total})
        else:
            out.print(f"Dry run: would delete {what}.", soft_wrap=False)
        return 0
    if plan.total and not _confirm(f"Delete {what}?", yes):
        return _aborted("purged")
    with _progress(plan.total, "Purging") as on_progress:
        purged = purge(conn, plan, on_progress)
    if as_json:
        state.print_json({"purged": purged})
    else:
        out.print(f"Deleted {purged} {kind} job(s) of {', '.join(sites)}.", soft_wrap=False)
    return 0


def requeue_failed_jobs(
    queue: str = typer.Option(None, "--queue", "-q", help=QUEUE_HELP),
    job_id: str = typer.Option(None, "--job-id", help="Requeue only this failed job."),
    yes: bool = YES_OPTION,
    as_json: bool = JSON_OPTION,
) -> int:
    """Put the site's failed jobs back on their queues (at the end) to run again. Asks first unless --yes;
    without a terminal, --yes is required.

    Example:

    \b
      bench-jobs --site site1.local requeue-failed-jobs --queue default --yes
    """
    from ..jobs.purge import failed_job_ids, requeue_failed
    from .tables import full_job_id

    found, settings, conn = _connect()
    sites = state.sites(found)
    if job_id:
        job_id = full_job_id(conn, settings, sites, job_id)
    by_queue = failed_job_ids(conn, settings, sites, _queues(queue), job_id)
    total = sum(len(ids) for ids in by_queue.values())
    what = f"{total} failed job(s) of {', '.join(sites)}"
    if total and not _confirm(f"Requeue {what}?", yes):
        return _aborted("requeued")
    with _progress(total, "Requeueing") as on_progress:
        requeued = requeue_failed(conn, settings, by_queue, on_progress)
    if as_json:
        state.print_json({"requeued": requeued})
    else:
        state.console().print(f"Requeued {requeued} failed job(s) of {', '.join(sites)}.")
    return 0
