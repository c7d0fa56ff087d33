"""What a newcomer sees on the console (issue 20): the lines a user wants from a worker, RQ's housekeeping only
with --verbose."""

from __future__ import annotations

import logging

import pytest
import redis
from support import run_cli

import bench_jobs
from bench_jobs.cli.rq_logs import RqChatterFilter
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench

HOUSEKEEPING = ("subscribing to channel", "scheduler lock", "cleaning", "registering birth", "started with PID")


def record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.mark.parametrize(
    ("name", "level", "msg", "kept"),
    [
        ("rq.worker", logging.INFO, "Worker %s: %s: %s (%s)", True),  # a job taken, and Job OK
        ("rq.worker", logging.INFO, "Worker %s: %s: %s", True),
        ("rq.worker", logging.INFO, "*** Listening on %s...", True),
        ("rq.worker", logging.INFO, "Worker %s [PID %d]: warm shut down requested", True),
        ("rq.worker", logging.ERROR, "Worker %s: found an unhandled exception, quitting...", True),
        ("rq.worker", logging.WARNING, "Work horse killed for job %s: retpid=%s, ret_val=%s", True),
        ("rq.worker", logging.INFO, "Worker %s: subscribing to channel %s", False),
        ("rq.worker", logging.INFO, "Worker %s: cleaning group registries", False),
        ("rq.worker", logging.INFO, "Worker %s: started with PID %d, version %s", False),
        ("rq.worker", logging.INFO, "Successfully completed job %s in %ss on worker %s", False),
        ("rq.worker", logging.INFO, "Worker %s: job %s result is kept for %s seconds", False),
        ("rq.worker", logging.DEBUG, "Worker %s: sent heartbeat to prevent worker timeout.", False),
        ("rq.scheduler", logging.INFO, "Acquired scheduler lock for %s", False),
        ("rq.scheduler", logging.INFO, "Scheduler for %s started with PID %s", False),
        ("rq.scheduler", logging.WARNING, "Scheduler lock for %s had expired; re-acquired", True),
    ],
)
def test_the_console_keeps_job_lines_warnings_and_failures_and_drops_rq_housekeeping(
    name: str, level: int, msg: str, kept: bool
) -> None:
    assert RqChatterFilter().filter(record(name, level, msg)) is kept


def test_a_worker_prints_its_jobs_without_rq_housekeeping_unless_verbose(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.fail", message="boom", site="alpha.test")
    quiet = run_cli("worker", "--burst", "--queue", "default", bench=bench)
    assert quiet.returncode == 0, quiet.stderr
    output = quiet.stdout + quiet.stderr
    assert "sample_app.tasks.echo" in output and "Job OK" in output, output
    assert "boom" in output, "a failure shows"
    assert not [line for line in output.splitlines() if any(word in line for word in HOUSEKEEPING)], output

    bench_jobs.enqueue("sample_app.tasks.echo", record_id="y", site="alpha.test")
    verbose = run_cli("--verbose", "worker", "--burst", "--queue", "default", bench=bench)
    assert "subscribing to channel" in verbose.stdout + verbose.stderr and "Job OK" in verbose.stdout
