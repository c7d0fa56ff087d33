"""`start` and `setup procfile|supervisor|systemd`: run a bench's processes, or write configs that run them."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from . import state

setup_app = typer.Typer(
    help="Write process configs for the bench's scheduler and queues (built-in and custom).\n\n"
    "Examples:\n\n"
    "  bench-jobs setup procfile\n\n"
    "  bench-jobs setup supervisor --user frappe --output /etc/supervisor/conf.d/\n\n"
    "  bench-jobs setup systemd --user frappe --output /etc/systemd/system/",
    no_args_is_help=True,
)


def start(
    no_reload: bool = typer.Option(
        False,
        "--no-reload",
        help="Do not watch the apps' source files: the processes keep the code they started with.",
    ),
) -> int:
    """Run the bench in the foreground as `bench start` does: a Redis at redis_queue when none answers there,
    the scheduler and a worker per queue, each process's output prefixed and coloured; with the web extra
    installed, also the dashboard on 127.0.0.1 (dashboard_port, else 11380, else a free port), whose URL it
    prints.

    Ctrl-C or SIGTERM stops everything: workers finish their running jobs first (Ctrl-C again stops those
    jobs), and a Redis started here is stopped last; it keeps an append-only file in <bench>/redis/, so jobs
    still queued then run at the next start. A process that exits on its own stops the others too,
    named with its exit code; `start` then exits 1. A Redis started here that dies is started again (same port,
    same append-only file), at most 3 times within 60 s; then everything stops and `start` exits 1.

    Reload: the apps' .py files (hooks included) are checked every second; when one changes (or is added or
    removed), a line names it, and the workers and the scheduler are started again on the new code while the old
    ones finish their running jobs (SIGTERM, a warm stop: no job is cut short or lost). `--no-reload` turns
    this off. Production workers (supervisor, systemd) never reload: restart them after a deploy.

    Examples:

    \b
      cd mybench && bench-jobs start
      bench-jobs start --no-reload
    """
    from ..ops.start import run_start

    return run_start(state.bench(), sys.stdout, reload=not no_reload)


@setup_app.command("procfile")
def setup_procfile(
    yes: bool = typer.Option(False, "--yes", "-y", help="Replace an existing Procfile without asking."),
) -> None:
    """Write <bench>/Procfile (Redis when local, the scheduler, a worker per queue) for honcho or foreman.

    Example:

    \b
      bench-jobs setup procfile && honcho start
    """
    from ..ops.process_configs import PROCFILE, procfile_text, write_procfile

    found = state.bench()
    path = found.root / PROCFILE
    if path.is_file() and path.read_text(encoding="utf-8") != procfile_text(found):
        question = f"{path} exists and differs from what would be written. Replace it?"
        if not state.confirm(question, yes, f"Refusing to replace {path} without confirmation"):
            state.error_console().print("Aborted: the Procfile is unchanged.")
            raise typer.Exit(1)
    state.console().print(f"Wrote {write_procfile(found)}")


@setup_app.command("supervisor")
def setup_supervisor(
    output: Path = typer.Option(
        None, "--output", "-o", help="File to write, or a folder for bench-jobs-<bench_id>.conf (default: stdout)."
    ),
    user: str = typer.Option(None, "--user", help="Run the processes as this user."),
) -> None:
    """Print (or write) a supervisord config: a program for the scheduler and one per queue with
    background_workers processes, SIGTERM to stop and stopwaitsecs beyond the queue's job timeout.

    Example:

    \b
      bench-jobs setup supervisor --user frappe -o /etc/supervisor/conf.d/ && supervisorctl update
    """
    from ..core.config import load_bench_settings
    from ..ops.process_configs import supervisor_conf, unit_prefix

    found = state.bench()
    text = supervisor_conf(found, user)
    if output is None:
        sys.stdout.write(text)
        return
    path = output / f"{unit_prefix(load_bench_settings(found))}.conf" if output.is_dir() else output
    _write(path, text)


@setup_app.command("systemd")
def setup_systemd(
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder to write the unit files to (default: stdout, each after a `### <name>` line).",
    ),
    user: str = typer.Option(None, "--user", help="Run the processes as this user (User=)."),
) -> None:
    """Print (or write) systemd units: the scheduler's service, a template service per queue (instances
    1..background_workers), and a target wanting them all. KillMode=mixed with TimeoutStopSec beyond the
    queue's job timeout lets a running job finish on stop.

    Example:

    \b
      bench-jobs setup systemd --user frappe -o /etc/systemd/system/
      systemctl daemon-reload && systemctl enable --now bench-jobs-<bench_id>.target
    """
    from ..errors import ConfigError
    from ..ops.process_configs import systemd_units

    units = systemd_units(state.bench(), user)
    if output is None:
        sys.stdout.write("\n".join(f"### {name}\n{text}" for name, text in units.items()))
        return
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{output} is not a folder.", hint="systemd units are several files: pass a folder.")
    for name, text in units.items():
        _write(output / name, text)


def _write(path: Path, text: str) -> None:
    from ..core.config_writer import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    state.console().print(f"Wrote {path}")
