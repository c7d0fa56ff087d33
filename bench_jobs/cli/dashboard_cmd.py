"""`bench-jobs dashboard`: the web dashboard of queues, workers, jobs and schedules."""

from __future__ import annotations

import typer

from . import state


def web_missing_error() -> Exception:
    """The error `dashboard` raises where the web extra is not installed."""
    from ..errors import ConfigError

    return ConfigError(
        "The dashboard needs the `web` extra (Starlette, Jinja2, uvicorn), which is not installed.",
        hint="pip install -e '.[web]' (or pip install 'bench-jobs[web]').",
    )


def dashboard(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; any but loopback needs a token."),
    port: int = typer.Option(
        None, "--port", "-p", help="Port to bind (default: dashboard_port in common config, else 11380; 0: any)."
    ),
    read_only: bool = typer.Option(False, "--read-only", help="No actions: no requeue, delete, purge, toggles."),
    new_token: bool = typer.Option(
        False, "--new-token", help="Generate a token, save it as dashboard_token and print it once."
    ),
) -> None:
    """Serve the web dashboard: queues, workers, each site's jobs and schedule, doctor's checks.

    It binds 127.0.0.1 by default. Any other address needs a token (dashboard_token in
    sites/common_site_config.toml, or --new-token); every action is a POST with a CSRF token.

    Examples:

    \b
      bench-jobs dashboard
      bench-jobs dashboard --read-only --port 8080
      bench-jobs dashboard --host 0.0.0.0 --new-token
    """
    from ..web.server import hold_stop_signals

    hold_stop_signals()
    from ..ops.process_configs import dashboard_port, web_extra_installed

    if not web_extra_installed():
        raise web_missing_error()
    from ..core.config import load_bench_settings
    from ..web.server import listen, serve

    found = state.bench()
    if port is None:
        port = dashboard_port(load_bench_settings(found))
    listener = listen(found, host, port, new_token)
    out = state.console()
    if listener.access.generated:
        out.print(f"Dashboard token (shown this once; saved as dashboard_token): {listener.access.token}")
    mode = " (read-only)" if read_only else ""
    out.print(f"Dashboard{mode} at {listener.url}", markup=False)
    serve(found, listener, read_only)
