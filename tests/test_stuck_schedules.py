"""Stuck schedules raise an alarm (issue 18): doctor warns, naming site, method and the blocking run, after
`stuck_after_skips` slots skipped in a row; metrics expose each entry's streak and last success age."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import redis

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.config_writer import update_config_file
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.errors import ConfigError
from bench_jobs.jobs import history
from bench_jobs.ops.doctor import run_doctor
from bench_jobs.scheduler.tick import Scheduler
from bench_jobs.web.metrics import render_metrics

UTC = timezone.utc
HOURLY = "sample_app.tasks.hourly"
START = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)


def blocked_hours(bench: Bench, hours: int) -> tuple[Scheduler, str]:
    """Ticks from 10:30: the 11:00 run is queued and never taken, then `hours` hourly slots are skipped."""
    use_bench(bench)
    sched = Scheduler(bench, connect(load_bench_settings(bench)))
    sched.tick(START)
    first = sched.tick(START + timedelta(minutes=30))
    (blocker,) = [d.job_id for d in first.fired if d.site == "alpha.test" and d.job.method == HOURLY]
    for hour in range(1, hours + 1):
        sched.tick(START + timedelta(minutes=30, hours=hour))
    assert blocker is not None
    return sched, blocker


def stuck_check(bench: Bench, now: datetime) -> tuple[bool, str, str]:
    report = run_doctor(bench, ["alpha.test", "beta.test"], now)
    (check,) = [c for c in report.checks if c.name == "stuck-schedules"]
    return check.warning, check.detail, check.hint


def test_doctor_warns_after_three_skips_in_a_row_naming_site_method_and_blocking_run(bench: Bench) -> None:
    sched, blocker = blocked_hours(bench, 2)
    assert stuck_check(bench, START + timedelta(hours=3))[0] is False
    sched.tick(START + timedelta(minutes=30, hours=3))
    warning, detail, hint = stuck_check(bench, START + timedelta(hours=4))
    assert warning
    assert f"alpha.test: {HOURLY} (hourly) skipped 3 slots in a row, blocked by {blocker}" in detail
    assert "why METHOD" in hint


def test_a_fire_ends_the_streak(bench: Bench, redis_client: redis.Redis) -> None:
    sched, blocker = blocked_hours(bench, 3)
    assert f"blocked by {blocker}" in stuck_check(bench, START + timedelta(hours=4))[1]
    for key in redis_client.scan_iter("rq:job:*"):  # every site's blocked runs end
        redis_client.hset(key, "status", "finished")
    sched.tick(START + timedelta(minutes=30, hours=4))
    assert stuck_check(bench, START + timedelta(hours=5))[0] is False


def test_stuck_after_skips_sets_the_limit(bench: Bench) -> None:
    update_config_file(bench.common_config_path, {"stuck_after_skips": 2})
    blocked_hours(bench, 2)
    assert stuck_check(bench, START + timedelta(hours=3))[0] is True


@pytest.mark.parametrize("value", [0, -1, "3", True])
def test_stuck_after_skips_must_be_a_whole_number_of_1_or_more(bench: Bench, value: object) -> None:
    update_config_file(bench.common_config_path, {"stuck_after_skips": value})
    with pytest.raises(ConfigError, match="stuck_after_skips"):
        load_bench_settings(bench)


def test_metrics_expose_consecutive_skips_and_the_last_success_age_per_entry(bench: Bench) -> None:
    blocked_hours(bench, 3)
    settings = load_site_settings(bench, "beta.test")
    history.record_outcome(settings, "hourly", "other_app.tasks.only_for_beta", "finished", 0.1)
    now = datetime.now(UTC) + timedelta(seconds=100)
    text = render_metrics(bench, now).decode()
    skips = 'bench_jobs_schedule_consecutive_skips{event="hourly",method="sample_app.tasks.hourly",site="alpha.test"}'
    assert f"{skips} 3.0" in text
    line = next(row for row in text.splitlines() if row.startswith("bench_jobs_schedule_last_success_age_seconds{"))
    assert 'method="other_app.tasks.only_for_beta"' in line and 'site="beta.test"' in line
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(100, abs=5)
