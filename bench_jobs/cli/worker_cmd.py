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
    num_workers: int = typer.Option(1, "--num-workers", "-n", help="Worker processes, each with its work-horse."),
    fork_per_job: bool = typer.Option(
        False,
        "--fork-per-job",
        help="Fork a fresh work-horse for every job, as `rq worker` does (slower; also the key fork_per_job).",
    ),
) -> int:
    """Run jobs of every site from the bench's queues. SIGTERM: finish the running job, then exit.

    Jobs run in a work-horse forked from the worker after it imported every app, many jobs per horse: a new
    horse is forked after max_jobs_per_horse jobs (1000), once it holds more than max_horse_memory_mb (512),
    and after any job that kills it (exits, segfaults, is OOM-killed or overruns its timeout), which fails
    that job alone with the reason. --fork-per-job forks one per job instead.

    A second SIGTERM stops the running job at once (it is marked failed); a job over its timeout is
    killed and failed while the worker goes on. The console shows each job taken, `Job OK`, warnings and
    failures; --verbose (before the command) adds RQ's housekeeping (channels, scheduler locks, registries).

    Examples:

    \b
      bench-jobs worker --queue short,default
      bench-jobs worker --queue long --num-workers 2
      bench-jobs worker --queue long --fork-per-job
    """
    from ..worker.run import run_worker
    from .rq_logs import quiet_rq_chatter

    quiet_rq_chatter(state.options.verbose)
    found = state.bench()
    queues = [name.strip() for name in queue.split(",") if name.strip()] if queue else None
    return run_worker(
        found,
        queues,
        burst=burst,
        num_workers=num_workers,
        logging_level="DEBUG" if state.options.verbose else "INFO",
        fork_per_job=fork_per_job,
    )
