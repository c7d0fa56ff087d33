"""`use`, `set-config` and `show-config`: the default site and the settings, as Frappe's bench has them."""

from __future__ import annotations

import json

import typer

from . import state


def use(
    site: str = typer.Argument(..., help="The site to make the default (sites/currentsite.txt)."),
) -> None:
    """Make SITE the default site: commands without --site (and without $BENCH_JOBS_SITE) act on it.

    Example:

    \b
      bench-jobs use site1.local
    """
    from ..core.bench import CURRENT_SITE_FILE, validate_site_name, validate_site_selector
    from ..core.config_writer import write_atomic

    found = state.bench()
    name = validate_site_name(validate_site_selector(site, "SITE"))
    found.resolve_sites(name)  # the unknown-site error, listing the bench's sites
    write_atomic(found.sites_dir / CURRENT_SITE_FILE, name + "\n")
    state.console().print(f"Current site is now {name}.")


def set_config(
    key: str = typer.Argument(..., help="A top-level key, e.g. timezone, maintenance_mode, redis_queue."),
    value: str = typer.Argument(
        ..., help="A TOML value (true, 30, [\"a\"], '{long = {timeout = 900}}'); anything else is a string."
    ),
    bench_wide: bool = typer.Option(
        False, "--global", "-g", help="Write sites/common_site_config.toml instead of the site's config."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print {file, key, old, new, changed} (secrets redacted)."),
) -> None:
    """Set KEY to VALUE in the site's site_config.toml (every site with --site all), or bench-wide with
    --global. The value is checked by the rules config files are loaded with; comments in the file are kept;
    a table is merged into the one already there. Put -- before a negative number (-- -1).

    Examples:

    \b
      bench-jobs --site site1.local set-config timezone Europe/Berlin
      bench-jobs set-config --global scheduler_tick_interval 30
      bench-jobs set-config --global job_result_ttl -- -1
    """
    from ..core.config_edit import config_file, parse_value, redacted, set_config

    found = state.bench()
    parsed = parse_value(value)
    targets: list[str | None] = [None] if bench_wide else list(state.sites(found))
    rows = []
    for site in targets:
        change = set_config(found, key, parsed, site)
        rows.append(
            {
                "file": str(config_file(found, site)),
                "site": site,
                "key": key,
                "old": redacted(key, change.old),
                "new": redacted(key, change.new),
                "changed": change.changed,
            }
        )
    if as_json:
        state.print_json({"changes": rows})
        return
    out = state.console()
    for row in rows:
        where = row["site"] or "bench (common_site_config.toml)"
        shown = json.dumps(row["new"], default=str)
        if row["changed"]:
            out.print(f"{where}: {key} = {shown}", markup=False)
        else:
            out.print(f"{where}: {key} is already {shown} (unchanged)", markup=False)


def show_config(
    bench_wide: bool = typer.Option(False, "--global", "-g", help="Show only the bench-wide settings."),
    as_json: bool = typer.Option(False, "--json", help="Print {sites: [{site, config: [{key, value, source}]}]}."),
) -> None:
    """Show the settings the site runs with (every site with --site all), where each comes from (site,
    common, environment or default), passwords redacted. Without a site, or with --global, the bench-wide
    settings.

    Examples:

    \b
      bench-jobs --site site1.local show-config
      bench-jobs show-config --global --json
    """
    from ..core.config_edit import config_rows

    found = state.bench()
    use_sites = not bench_wide and (state.options.site or found.default_site())
    sites: list[str | None] = list(state.sites(found)) if use_sites else [None]
    views = [(site, config_rows(found, site)) for site in sites]
    if as_json:
        state.print_json(
            {
                "sites": [
                    {"site": site, "config": [{"key": r.key, "value": r.value, "source": r.source} for r in rows]}
                    for site, rows in views
                ]
            }
        )
        return
    out = state.console()
    for index, (site, rows) in enumerate(views):
        if index:
            out.print()
        out.print(f"# {site or 'bench-wide'}", markup=False)
        width = max((len(row.key) for row in rows), default=0)
        for row in rows:
            shown = json.dumps(row.value, default=str)
            out.print(f"{row.key.ljust(width)} = {shown}  ({row.source})", markup=False)
