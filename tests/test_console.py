"""What a newcomer sees on the console (issue 20): the lines a user wants from a worker, RQ's housekeeping only
with --verbose."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

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


NOW = datetime(2026, 3, 10, 9, 1, 30, tzinfo=timezone.utc)


def test_schedule_starts_by_logging_each_sites_next_runs_in_its_zone(bench: Bench) -> None:
    from bench_jobs.cli.schedule_cmd import next_runs_lines

    path = bench.site_config_path("beta.test")
    path.write_text(path.read_text().replace("scheduler_enabled = true", "scheduler_enabled = false"))
    use_bench(bench)
    alpha, beta = next_runs_lines(bench, NOW)
    assert alpha.startswith("alpha.test: next runs (UTC): Tue 09:04 sample_app.tasks.every_tick, Tue 09:15 ")
    assert alpha.endswith(" more: bench-jobs show-schedule)")
    assert beta == "beta.test: scheduler off (disabled or in maintenance): nothing fires"


def test_a_job_seen_first_says_when_it_will_first_run_and_that_its_slot_is_only_recorded() -> None:
    from bench_jobs.core.hooks import ScheduledJob
    from bench_jobs.scheduler.loop import first_seen_line
    from bench_jobs.scheduler.tick import Decision

    job = ScheduledJob("my_app", "daily", "my_app.tasks.x", "0 1 * * *", "default")
    slot = datetime(2026, 3, 10, 0, 0, tzinfo=timezone.utc)  # 01:00 in Berlin, before now
    seen = Decision("site1.local", job, slot, "first_seen")
    assert first_seen_line(seen, NOW, "Europe/Berlin") == (
        "first seen: site1.local: my_app.tasks.x will first run at 2026-03-11 01:00 CET "
        "(the slot when it was first seen, 01:00, is recorded, not run)"
    )


def test_the_scheduler_logs_the_first_sighting_of_each_job(
    bench: Bench, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    from bench_jobs.scheduler.loop import SchedulerLoop

    caplog.set_level(logging.INFO, "bench_jobs.scheduler.tick")
    SchedulerLoop(bench).beat()  # leads (no other scheduler) and ticks once
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("first seen: alpha.test: ")]
    assert any("sample_app.tasks.hourly will first run at " in line for line in lines), lines


def test_show_schedule_says_that_a_new_jobs_first_slot_is_recorded_not_run(
    bench: Bench, redis_client: redis.Redis
) -> None:
    result = run_cli("--site", "alpha.test", "show-schedule", bench=bench)
    assert result.returncode == 0, result.stderr
    assert "the slot in which the scheduler first sees a job is recorded, not run" in " ".join(result.stdout.split())
