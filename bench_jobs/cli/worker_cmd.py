"""`bench-jobs worker`: the process a Procfile line runs for each queue (or all of them)."""

from __future__ import annotations

import typer

from . import state


def worker(
    queue: str = typer.Option(
        None,
        "--queue",
        "-q",
        help="Comma-separated queues, served in this order (default: short, default, long, then custom queues).",
    ),
    burst: bool = typer.Option(False, "--burst", help="Exit when the queues are empty."),
    num_workers: int = typer.Option(1, "--num-workers", "-n", help="Worker processes (each forks per job)."),
) -> int:
    """Run jobs of every site from the bench's queues. SIGTERM: finish the running job, then exit.

    A second SIGTERM stops the running job at once (it is marked failed); a job over its timeout is
    killed and failed while the worker goes on. The console shows each job taken, `Job OK`, warnings and
    failures; --verbose (before the command) adds RQ's housekeeping (channels, scheduler locks, registries).

    Examples:

    \b
      bench-jobs worker --queue short,default
      bench-jobs worker --queue long --num-workers 2
    """
    from ..worker.serve import run_worker
    from .rq_logs import quiet_rq_chatter

    quiet_rq_chatter(state.options.verbose)
    found = state.bench()
    queues = [name.strip() for name in queue.split(",") if name.strip()] if queue else None
    return run_worker(
        found, queues, burst=burst, num_workers=num_workers, logging_level="DEBUG" if state.options.verbose else "INFO"
    )


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
