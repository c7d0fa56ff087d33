"""`scheduler status|pause|resume` and `set-maintenance-mode`: Frappe's switches for what the scheduler fires."""

from __future__ import annotations

from enum import Enum

import typer

from . import state

scheduler_app = typer.Typer(
    help="See and switch the bench's scheduler: status per site; pause / resume for the whole bench.\n\n"
    "Examples:\n\n"
    "  bench-jobs --site all scheduler status\n\n"
    "  bench-jobs scheduler pause",
    no_args_is_help=True,
)


def status(
    as_json: bool = typer.Option(False, "--json", help="Print {paused, sites: [{site, status, fires, ...}]}."),
) -> None:
    """Show per site whether the scheduler fires: enabled, disabled, maintenance (maintenance_mode) or paused
    (pause_scheduler, bench-wide). Reads config only; Redis need not be up.

    The sites are those --site selects: the default site (BENCH_JOBS_SITE, sites/currentsite.txt) when it is
    not given, every site with --site all, or when there is no default site.

    Examples:

    \b
      bench-jobs --site all scheduler status
      bench-jobs scheduler status --json
    """
    from ..core.config import load_bench_settings
    from ..scheduler.status import scheduler_statuses

    found = state.bench()
    sites = state.sites(found) if state.options.site or found.default_site() else found.site_names()
    statuses = scheduler_statuses(found, sites)
    if as_json:
        paused = load_bench_settings(found).scheduler_paused
        state.print_json({"paused": paused, "sites": [s.as_json() for s in statuses]})
        return
    out = state.console()
    colours = {"enabled": "green", "disabled": "red", "maintenance": "yellow", "paused": "yellow"}
    for row in statuses:
        out.print(f"{row.site}: [{colours[row.status]}]{row.status}[/{colours[row.status]}]", markup=True)
    if not statuses:
        out.print("The bench has no sites.")
    elif len(statuses) < len(found.site_names()) and not state.options.site:
        out.print(f"(the default site only, of {len(found.site_names())}: --site all shows every site)")


def _set_pause(paused: bool) -> bool:
    from ..core.config_writer import update_config_file

    (change,) = update_config_file(state.bench().common_config_path, {"pause_scheduler": paused})
    return change.changed


def pause() -> None:
    """Pause the scheduler for every site of the bench (pause_scheduler = true in common_site_config.toml).

    Ticks go on but fire nothing; queued jobs still run. On resume each job runs at most once, for its latest
    missed slot, as after any gap.

    Example:

    \b
      bench-jobs scheduler pause
    """
    changed = _set_pause(True)
    state.console().print("Scheduler paused for the bench." if changed else "Scheduler already paused (unchanged).")


def resume() -> None:
    """Resume the bench's scheduler after `scheduler pause` (pause_scheduler = false).

    Example:

    \b
      bench-jobs scheduler resume
    """
    changed = _set_pause(False)
    state.console().print("Scheduler resumed for the bench." if changed else "Scheduler was not paused (unchanged).")


class Switch(str, Enum):
    on = "on"
    off = "off"


def set_maintenance_mode(
    mode: Switch = typer.Argument(..., help="on or off."),
    as_json: bool = typer.Option(False, "--json", help="Print {sites: [{site, maintenance_mode, changed}]}."),
) -> None:
    """Put the site (or every site with --site all) in maintenance mode, or take it out: while on, the
    scheduler skips the site and `doctor` says so; jobs already queued still run.

    Examples:

    \b
      bench-jobs --site site1.local set-maintenance-mode on
      bench-jobs --site all set-maintenance-mode off
    """
    from ..core.config_writer import update_config_file

    found = state.bench()
    on = mode is Switch.on
    rows = []
    for site in state.sites(found):
        (change,) = update_config_file(found.site_config_path(site), {"maintenance_mode": on})
        rows.append({"site": site, "maintenance_mode": on, "changed": change.changed})
    if as_json:
        state.print_json({"sites": rows})
        return
    out = state.console()
    for row in rows:
        out.print(f"{row['site']}: maintenance mode {mode.value}" + ("" if row["changed"] else " (unchanged)"))


scheduler_app.command("status")(status)
scheduler_app.command("pause")(pause)
scheduler_app.command("resume")(resume)
