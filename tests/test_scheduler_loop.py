"""What keeps the scheduler running: one site's broken cron, an unexpected error, a read-only Redis; the
process heartbeats doctor counts; outcomes recorded without ever failing the job (DESIGN 5)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from support import write

from bench_jobs.core import connection as redis_conn
from bench_jobs.core import hooks
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.config_writer import update_config_file
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.jobs import history as schedule_history
from bench_jobs.scheduler import loop as schedule_loop
from bench_jobs.scheduler.leader import Heartbeat, Lease, drop_heartbeat, live_processes, process_name, write_heartbeat
from bench_jobs.scheduler.loop import SchedulerLoop
from bench_jobs.scheduler.tick import Scheduler, TickResult

UTC = timezone.utc
KEYS = Keys("testbench")
NOW = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)


def test_a_cron_that_never_matches_is_a_problem_of_its_site_and_the_other_site_still_fires(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(bench.apps_dir / "feb_app" / "__init__.py", "")
    write(bench.apps_dir / "feb_app" / "hooks.py", 'scheduler_events = {"cron": {"0 0 31 2 *": ["feb_app.x.y"]}}\n')
    write(bench.site_config_path("alpha.test"), 'apps = ["sample_app", "feb_app"]\nscheduler_enabled = true\n')
    monkeypatch.setattr(hooks, "cron_problem", lambda cron: None)  # as if validation had let it through
    use_bench(bench)
    sched = Scheduler(bench, redis_conn.connect(load_bench_settings(bench)))
    sched.tick(NOW)
    result = sched.tick(NOW + timedelta(minutes=30))
    assert {d.site for d in result.fired} == {"beta.test"}
    (problem,) = result.problems
    assert problem.startswith("alpha.test: no job fires") and "never matches a real date" in problem


@pytest.fixture
def loop(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> SchedulerLoop:
    """A scheduler loop that ticks again at once instead of waiting for the next boundary."""
    monkeypatch.setattr(schedule_loop, "next_boundary", lambda now_s, tick_interval_s: now_s)
    monkeypatch.setattr(schedule_loop, "BACKOFF_FIRST_S", 0.01)
    use_bench(bench)
    return SchedulerLoop(bench, threading.Event())


def ticks_failing(loop: SchedulerLoop, monkeypatch: pytest.MonkeyPatch, failures: list[Exception]) -> list[int]:
    """Make the loop's ticks raise `failures` in turn, then stop the loop on the next tick; returns a call log."""
    calls: list[int] = []

    def tick(self: Scheduler, now: datetime) -> TickResult:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        loop.stop.set()
        return TickResult(now)

    monkeypatch.setattr(Scheduler, "tick", tick)
    return calls


def test_an_unexpected_tick_error_is_logged_with_its_traceback_once_and_the_loop_goes_on(
    loop: SchedulerLoop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = ticks_failing(loop, monkeypatch, [ValueError("bad date"), ValueError("bad date")])
    with caplog.at_level(logging.INFO, logger="bench_jobs.scheduler.tick"):
        assert loop.run() == 0
    assert len(calls) == 3
    failed = [r for r in caplog.records if "tick failed" in r.getMessage()]
    assert [r.exc_info is not None for r in failed] == [True, False]
    assert "ValueError: bad date" in failed[0].getMessage()


@pytest.mark.parametrize(
    "error",
    [redis.ReadOnlyError("You can't write against a read only replica."), redis.ConnectionError("gone")],
    ids=["readonly-after-failover", "connection-lost"],
)
def test_a_read_only_or_lost_redis_is_waited_out_with_backoff(
    loop: SchedulerLoop, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    calls = ticks_failing(loop, monkeypatch, [])
    hold = Lease.hold
    failures = [error, error]

    def flaky_hold(self: Lease) -> bool:
        if failures:
            raise failures.pop(0)
        return hold(self)

    monkeypatch.setattr(Lease, "hold", flaky_hold)
    with caplog.at_level(logging.INFO, logger="bench_jobs.scheduler.tick"):
        assert loop.run() == 0
    assert calls == [1]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis at" in m for m in messages) == 1 and "Redis answers again; scheduler resumes" in messages


def beat(conn: redis.Redis, host: str, age_s: float, leader: bool = False) -> None:
    at = (datetime.now(UTC) - timedelta(seconds=age_s)).isoformat()
    write_heartbeat(conn, KEYS, Heartbeat(at=at, host=host, pid=1, leader=leader, tick_interval_s=60))


def test_doctor_counts_processes_that_beat_within_three_ticks_and_writers_prune_the_rest(
    redis_client: redis.Redis,
) -> None:
    beat(redis_client, "standby", age_s=100)
    beat(redis_client, "gone", age_s=300)
    assert redis_client.zcard(KEYS.scheduler_processes) == 2
    beat(redis_client, "leader", age_s=0, leader=True)
    assert live_processes(redis_client, KEYS, datetime.now(UTC), 60) == 2
    assert {m.decode() for m in redis_client.zrange(KEYS.scheduler_processes, 0, -1)} == {"standby:1", "leader:1"}
    assert set(redis_client.keys(f"{KEYS.prefix}:*")) == {KEYS.scheduler_processes.encode(), KEYS.heartbeat.encode()}
    host, _, pid = process_name().rpartition(":")
    write_heartbeat(redis_client, KEYS, Heartbeat(datetime.now(UTC).isoformat(), host, int(pid), False, 60))
    drop_heartbeat(redis_client, KEYS)
    assert live_processes(redis_client, KEYS, datetime.now(UTC), 60) == 2


def test_recording_an_outcome_is_one_pipelined_push_and_never_raises(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_site_settings(bench, "alpha.test")
    sent: list[Any] = []
    execute = redis.client.Pipeline.execute

    def counting_execute(self: Any, raise_on_error: bool = True) -> Any:
        sent.append([args[0] for args, _ in self.command_stack])
        return execute(self, raise_on_error)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting_execute)
    schedule_history.record_outcome(settings, "hourly", "sample_app.tasks.hourly", "finished", 0.5)
    # one round trip: the entry, the cap, its counter, the entry's last success (for the metrics)
    assert sent == [["LPUSH", "LTRIM", "HINCRBY", "HSET"]]
    (entry,) = schedule_history.read(redis_client, KEYS, "alpha.test")
    assert entry["status"] == "finished" and entry["duration_s"] == 0.5

    def broken(*args: object) -> None:
        raise RuntimeError("no connection for you")

    monkeypatch.setattr(redis_conn, "connect", broken)
    schedule_history.record_outcome(settings, "hourly", "sample_app.tasks.hourly", "failed", error="x")


def test_an_unreadable_in_flight_mark_is_dropped_and_the_tick_goes_on(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    redis_client.hset(KEYS.in_flight, "testbench-alpha_2etest--s-x-1", "not json")
    result = Scheduler(bench, redis_conn.connect(load_bench_settings(bench))).tick(NOW)
    assert result.problems == [] and result.having("first_seen")
    assert redis_client.hlen(KEYS.in_flight) == 0


def test_a_paused_bench_is_logged_once_when_it_pauses_and_once_when_it_resumes(
    loop: SchedulerLoop, bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    update_config_file(bench.common_config_path, {"pause_scheduler": True})
    with caplog.at_level(logging.INFO, logger="bench_jobs.scheduler"):
        for _ in range(3):
            loop.beat()
        update_config_file(bench.common_config_path, {"pause_scheduler": False})
        loop.beat()
        loop.beat()
    messages = [r.getMessage() for r in caplog.records if "pause" in r.getMessage()]
    assert len(messages) == 2, messages
    assert messages[0].startswith("paused (pause_scheduler)") and messages[1].startswith("resumed")
