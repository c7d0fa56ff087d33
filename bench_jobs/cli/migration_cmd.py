"""`ready-for-migration`: whether a site can be migrated now, i.e. none of its jobs is queued or running."""

from __future__ import annotations

import typer

from . import state

SHOWN_JOBS = 20  # jobs named per site; the count says when there are more


def ready_for_migration(
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print {ready, sites: [{site, ready, pending, more, jobs: [{id, queue, method, status}]}]}.",
    ),
) -> int:
    """Exit 0 when the site (every site with --site all) has no pending job (queued, running, a scheduled
    retry or deferred), else exit 1 naming them, as Frappe's bench does before `migrate`. Pause the scheduler
    or put the site in maintenance mode first so that nothing new is queued meanwhile.

    Examples:

    \b
      bench-jobs --site site1.local ready-for-migration && ./migrate.sh
      bench-jobs --site all ready-for-migration --json
    """
    from ..core.config import load_bench_settings
    from ..core.connection import connect_checked
    from ..errors import EXIT_FAILED, EXIT_OK
    from ..jobs.listings import pending_jobs

    found = state.bench()
    sites = state.sites(found)
    settings = load_bench_settings(found)
    conn = connect_checked(settings)
    rows = []
    for site in sites:
        jobs = pending_jobs(conn, settings, [site], limit=SHOWN_JOBS + 1)
        rows.append(
            {
                "site": site,
                "ready": not jobs,
                "pending": min(len(jobs), SHOWN_JOBS),
                "more": len(jobs) > SHOWN_JOBS,
                "jobs": [
                    {"id": job.id, "queue": job.queue, "method": job.method, "status": job.status}
                    for job in jobs[:SHOWN_JOBS]
                ],
            }
        )
    ready = all(row["ready"] for row in rows)
    if as_json:
        state.print_json({"ready": ready, "sites": rows})
        return EXIT_OK if ready else EXIT_FAILED
    out = state.console()
    for row in rows:
        if row["ready"]:
            out.print(f"{row['site']}: ready for migration (no queued or running job)", markup=False)
            continue
        count = f"{row['pending']}{' or more' if row['more'] else ''}"
        out.print(f"{row['site']}: NOT ready for migration: {count} pending job(s)", markup=False)
        for job in row["jobs"]:  # type: ignore[attr-defined]
            out.print(f"  {job['status']:<10} {job['queue']:<8} {job['method'] or '?'}  {job['id']}", markup=False)
    return EXIT_OK if ready else EXIT_FAILED
