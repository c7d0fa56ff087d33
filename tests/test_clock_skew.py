"""A `schedule` process whose clock runs ahead of Redis's (issue 17, item 6): it ticks, beats and prunes by
Redis's TIME, and doctor names any process whose clock is off by more than CLOCK_SKEW_LIMIT_S."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from support import cli_env, kill_tree, make_bench, start_cli, start_redis, wait_for, write

from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.jobs import history as schedule_history
from bench_jobs.ops.doctor import run_doctor
from bench_jobs.scheduler import clock as clock_module
from bench_jobs.scheduler.clock import read_clock
from bench_jobs.scheduler.leader import Heartbeat, live_processes, read_heartbeat, write_heartbeat
from bench_jobs.scheduler.loop import SchedulerLoop
from bench_jobs.scheduler.tick import Scheduler, TickResult

KEYS = Keys("testbench")
AHEAD_S = 400.0  # more than the 180 s after which a process counts as silent with 60 s ticks


def run_ahead(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This process's clock reads `seconds` ahead of Redis's (the same host's clock)."""
    real = time.time
    monkeypatch.setattr(clock_module.time, "time", lambda: real() + seconds)


def redis_s(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def test_read_clock_measures_how_far_this_process_is_ahead(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert abs(read_clock(redis_client).offset_s) < 0.5
    run_ahead(monkeypatch, AHEAD_S)
    clock = read_clock(redis_client)
    assert clock.offset_s == pytest.approx(AHEAD_S, abs=0.5)
    assert clock.now.timestamp() == pytest.approx(redis_s(redis_client), abs=0.5)


def test_a_scheduler_ahead_of_redis_ticks_and_beats_by_redis_time_and_keeps_the_others_alive(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own clock would fire slots AHEAD_S early and prune a process that beat just now as silent."""
    use_bench(bench)
    other = Heartbeat(datetime.fromtimestamp(redis_s(redis_client), UTC).isoformat(), "other-host", 1, False, 60)
    write_heartbeat(redis_client, KEYS, other)
    ticked_at: list[datetime] = []
    real_tick = Scheduler.tick

    def tick(self: Scheduler, now: datetime) -> TickResult:
        ticked_at.append(now)
        return real_tick(self, now)

    monkeypatch.setattr(Scheduler, "tick", tick)
    run_ahead(monkeypatch, AHEAD_S)
    loop = SchedulerLoop(bench)
    loop.beat()
    assert loop.leading and len(ticked_at) == 1
    assert ticked_at[0].timestamp() == pytest.approx(redis_s(redis_client), abs=1.0), "the slot time is Redis's"
    beat = read_heartbeat(redis_client, KEYS)
    assert beat is not None and beat["clock_offset_s"] == pytest.approx(AHEAD_S, abs=0.5)
    assert datetime.fromisoformat(beat["at"]).timestamp() == pytest.approx(redis_s(redis_client), abs=1.0)
    redis_now = datetime.fromtimestamp(redis_s(redis_client), UTC)
    assert live_processes(redis_client, KEYS, redis_now, 60) == 2, "the other process is still alive"


def test_the_loop_sleeps_until_the_next_boundary_of_redis_time(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_bench(bench)
    run_ahead(monkeypatch, 30.0)
    loop = SchedulerLoop(bench)
    wakes: list[float] = []
    monkeypatch.setattr(loop, "_sleep_until", lambda wake_s: (wakes.append(wake_s), loop.stop.set()))
    loop.run()
    redis_boundary_s = (int(redis_s(redis_client)) // 60 + 1) * 60
    assert wakes and wakes[0] == pytest.approx(redis_boundary_s + 30.0, abs=1.0), "local wake = Redis boundary + offset"


def test_a_wake_up_a_hair_before_the_redis_boundary_ticks_at_the_boundary(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local wake-up is timed with an offset measured to within a round trip: ticking before the boundary
    by Redis's clock would miss that boundary's slot (the next tick fires only the latest)."""
    use_bench(bench)
    ticked_at: list[datetime] = []
    real_tick = Scheduler.tick
    monkeypatch.setattr(Scheduler, "tick", lambda self, now: (ticked_at.append(now), real_tick(self, now))[1])
    loop = SchedulerLoop(bench)
    loop.boundary_s = redis_s(redis_client) + 0.1
    loop.beat()
    assert ticked_at and ticked_at[0].timestamp() >= loop.boundary_s


def clock_check(bench: Bench, **kwargs: Any) -> dict[str, Any]:
    (check,) = [c.as_json() for c in run_doctor(bench, [], **kwargs).checks if c.name == "clock"]
    return check


def test_doctor_names_a_scheduler_process_whose_clock_is_off_and_its_own_host(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = datetime.fromtimestamp(redis_s(redis_client), UTC).isoformat()
    write_heartbeat(redis_client, KEYS, Heartbeat(at, "good-host", 1, True, 60, clock_offset_s=0.2))
    check = clock_check(bench)
    assert check["level"] == "ok" and "1 scheduler process(es)" in check["detail"], check
    write_heartbeat(redis_client, KEYS, Heartbeat(at, "skewed-host", 2, False, 60, clock_offset_s=90.0))
    check = clock_check(bench)
    assert check["level"] == "warning", check
    assert "scheduler process skewed-host:2's clock is 90.0 s ahead of Redis's" in check["detail"]
    assert "good-host" not in check["detail"] and "NTP" in check["hint"]
    run_ahead(monkeypatch, -5.0)
    assert "this host (doctor)'s clock is 5.0 s behind Redis's" in clock_check(bench)["detail"]


def test_doctor_judges_the_schedulers_heartbeat_by_redis_time(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = datetime.fromtimestamp(redis_s(redis_client), UTC).isoformat()
    write_heartbeat(redis_client, KEYS, Heartbeat(at, "leader-host", 1, True, 60, clock_offset_s=0.0))
    run_ahead(monkeypatch, AHEAD_S)  # doctor's own host runs ahead: the beat is still fresh, the process alive
    monkeypatch.setattr("bench_jobs.ops.doctor.datetime", _AheadDatetime)
    (check,) = [c for c in run_doctor(bench, []).checks if c.name == "scheduler"]
    assert check.ok and "1 scheduler process(es) alive" in check.detail, check


class _AheadDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.fromtimestamp(time.time() + AHEAD_S, tz)


FAKETIME_LIB = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), Path("/nonexistent"))


@pytest.mark.slow
@pytest.mark.skipif(not FAKETIME_LIB.exists(), reason="libfaketime is not installed (apt-get install faketime)")
def test_a_schedule_process_90_s_ahead_fires_no_slot_early_and_doctor_names_it(tmp_path: Path) -> None:
    """Two `schedule` processes, one under libfaketime +90 s and leading first, ticking every second: no slot
    is queued before its time, both count as alive, and doctor names the skewed one."""
    server = start_redis(tmp_path / "redis")
    bench = make_bench(tmp_path / "bench", server.url, tick_interval_s=1)
    common = bench.common_config_path
    tick = "scheduler_tick_interval = 1\n"
    common.write_text(common.read_text().replace(tick, tick + "scheduler_interval = 1\n"))
    write(bench.apps_dir / "tick_app" / "__init__.py", "")
    write(bench.apps_dir / "tick_app" / "hooks.py", 'scheduler_events = {"all": ["tick_app.jobs.beat"]}\n')
    write(bench.apps_dir / "tick_app" / "jobs.py", "def beat():\n    pass\n")
    write(bench.site_config_path("alpha.test"), 'apps = ["tick_app"]\ntimezone = "UTC"\nscheduler_enabled = true\n')
    write(bench.site_config_path("beta.test"), 'apps = ["tick_app"]\nscheduler_enabled = false\n')
    client = server.client()
    env = {**cli_env(bench), "LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": "+90s", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    skewed = subprocess.Popen(
        [sys.executable, "-m", "bench_jobs", "schedule"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    processes = [skewed]
    early: list[str] = []
    try:
        wait_for(lambda: (read_heartbeat(client, Keys("testbench")) or {}).get("pid") == skewed.pid, 30, "skewed lead")
        processes.append(start_cli(bench, "schedule"))
        deadline = time.time() + 6
        while time.time() < deadline:
            now_s = time.time()
            for entry in schedule_history.read(client, Keys("testbench"), "alpha.test"):
                slot = entry.get("slot")
                if entry["status"] == "queued" and slot and datetime.fromisoformat(slot).timestamp() > now_s + 0.5:
                    early.append(f"slot {slot} queued at {datetime.fromtimestamp(now_s, UTC).isoformat()}")
            time.sleep(0.2)
        use_bench(bench)
        report = run_doctor(bench, [])
        checks = {c.name: c for c in report.checks}
    finally:
        for process in processes:
            kill_tree(process)
        server.stop()
    assert not early, early[:5]
    assert "2 scheduler process(es) alive" in checks["scheduler"].detail, checks["scheduler"].detail
    assert checks["clock"].warning and f":{skewed.pid}'s clock is 90" in checks["clock"].detail, checks["clock"]
