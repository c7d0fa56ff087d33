"""Commands that create benches and sites and switch their scheduler on or off."""

from __future__ import annotations

from pathlib import Path

import typer

from . import state


def _set_scheduler(enabled: bool, as_json: bool) -> None:
    from ..core.config_writer import update_config_file

    found = state.bench()
    rows = []
    for site in state.sites(found):
        (change,) = update_config_file(found.site_config_path(site), {"scheduler_enabled": enabled})
        rows.append({"site": site, "scheduler_enabled": enabled, "changed": change.changed})
    if as_json:
        state.print_json({"sites": rows})
        return
    word = "enabled" if enabled else "disabled"
    out = state.console()
    for row in rows:
        if row["changed"]:
            out.print(f"{row['site']}: scheduler {word}")
        else:
            out.print(f"{row['site']}: scheduler already {word} (unchanged)")


def enable_scheduler(
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Enable the scheduler for the site (or every site with --site all).

    Example:

    \b
      bench-jobs --site all enable-scheduler
    """
    _set_scheduler(True, as_json)


def disable_scheduler(
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Disable the scheduler for the site (or every site with --site all); queued jobs still run.

    Example:

    \b
      bench-jobs --site site1.local disable-scheduler
    """
    _set_scheduler(False, as_json)


def init(
    directory: Path = typer.Argument(..., help="Folder for the new bench (created if missing)."),
    site: str = typer.Option("site1.local", "--site-name", help="Name of the first site."),
    redis_url: str = typer.Option(
        None,
        "--redis-url",
        help="Redis URL for queues (default "
        "redis://127.0.0.1:11311, a port of its own so it never meets another Redis).",
    ),
    timezone: str = typer.Option(None, "--timezone", help="IANA time zone of the site (default: the server's)."),
) -> None:
    """Create a bench with one site (scheduler enabled) and a demo app whose hooks schedule a few jobs.

    Example:

    \b
      bench-jobs init mybench && cd mybench && bench-jobs execute demo_app.tasks.greet
    """
    from ..core.config import DEFAULT_REDIS_URL
    from ..ops.scaffold import DEMO_APP, create_bench

    bench = create_bench(directory, site=site, redis_url=redis_url or DEFAULT_REDIS_URL, timezone=timezone)
    out = state.console()
    out.print(f"Created bench {bench.root}")
    out.print(f"  site {site} (current site, scheduler enabled), app {DEMO_APP} in apps/")
    out.print(f"Next: cd {directory} && bench-jobs execute demo_app.tasks.greet --kwargs \"{{'name': 'Ada'}}\"")


def new_site(
    name: str = typer.Argument(..., help="Site name: letters, digits, '.', '_' and '-'."),
    apps: str = typer.Option(None, "--apps", help="Comma-separated apps of the site (default: the bench's apps)."),
    timezone: str = typer.Option(None, "--timezone", help="IANA time zone of the site (default: the server's)."),
    enable: bool = typer.Option(False, "--enable-scheduler", help="Enable the scheduler for the new site."),
) -> None:
    """Create a site in the bench.

    Example:

    \b
      bench-jobs new-site shop.example.com --timezone Europe/Berlin --enable-scheduler
    """
    from ..ops.scaffold import create_site

    found = state.bench()
    app_list = [a.strip() for a in apps.split(",") if a.strip()] if apps else None
    path = create_site(found, name, timezone=timezone, apps=app_list, scheduler_enabled=enable)
    state.console().print(f"Created site {name}: {path}")
