"""A full Redis (maxmemory reached under noeviction) is an outage to ride out (issue 17, item 4): enqueue says
so and what to free, workers wait and go on with no job failed for it, and doctor warns before it happens."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from support import RedisServer, kill_tree, make_bench, start_cli, start_redis, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.errors import EXIT_REDIS, RedisUnavailable
from bench_jobs.ops.doctor import run_doctor

MAXMEMORY_MB = 8
FILLER_BYTES = 100_000


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(
        tmp_path / "small-redis", extra=("--maxmemory", f"{MAXMEMORY_MB}mb", "--maxmemory-policy", "noeviction")
    )
    yield server
    server.stop()


@pytest.fixture
def small_bench(tmp_path: Path, small_redis: RedisServer) -> Bench:
    bench = make_bench(tmp_path / "bench", small_redis.url)
    use_bench(bench)
    return bench


def fill(client: redis.Redis, up_to_ratio: float) -> None:
    """Write filler keys until used memory passes `up_to_ratio` of maxmemory."""
    limit = int(client.info("memory")["maxmemory"])
    for index in range(10_000):
        if int(client.info("memory")["used_memory"]) > up_to_ratio * limit:
            return
        client.set(f"filler:{index}", b"x" * FILLER_BYTES)


def make_full(client: redis.Redis) -> None:
    """Fill Redis past its maxmemory, well past: used memory wobbles by a few kB as clients come and go."""
    fill(client, 0.6)
    client.config_set("maxmemory", int(client.info("memory")["used_memory"]) // 2)
    with pytest.raises(redis.OutOfMemoryError):
        client.set("filler:one-more", b"x")


def make_room(client: redis.Redis) -> None:
    client.config_set("maxmemory", f"{MAXMEMORY_MB}mb")
    keys = list(client.scan_iter("filler:*"))
    if keys:
        client.delete(*keys)


def memory_check(bench: Bench) -> dict[str, Any]:
    report = run_doctor(bench, ["alpha.test"])
    (check,) = [c.as_json() for c in report.checks if c.name == "redis-memory"]
    return check


def test_doctor_warns_past_80_percent_of_maxmemory_and_fails_past_95(
    small_bench: Bench, small_redis: RedisServer
) -> None:
    client = small_redis.client()
    assert memory_check(small_bench)["level"] == "ok"
    fill(client, 0.85)
    check = memory_check(small_bench)
    assert check["level"] == "warning" and "of maxmemory 8.0 MB" in check["detail"], check
    assert "purge-jobs --failed" in check["hint"]
    fill(client, 0.97)
    assert memory_check(small_bench)["level"] == "error"


def test_enqueue_into_a_full_redis_says_the_job_was_not_queued_and_what_to_free(
    small_bench: Bench, small_redis: RedisServer
) -> None:
    client = small_redis.client()
    make_full(client)
    with pytest.raises(RedisUnavailable) as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="full", site="alpha.test")
    error = caught.value
    assert error.exit_code == EXIT_REDIS
    assert "is full" in error.message and "was NOT queued" in error.message, error.message
    assert error.hint and "maxmemory" in error.hint and "bench-jobs purge-jobs --failed" in error.hint
    assert list(client.scan_iter("rq:job:*")) == [], "no half-written job left behind"
    make_room(client)
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="room again", site="alpha.test") is not None


def calls(bench: Bench, event: str) -> list[dict[str, Any]]:
    path = bench.logs_dir / "alpha.test" / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record["event"] == event]


@pytest.mark.slow
def test_a_worker_rides_out_a_full_redis_and_no_job_fails_for_it(small_bench: Bench, small_redis: RedisServer) -> None:
    """Redis fills up while a job runs and stays full past a worker's alive-key TTL: the job's success is
    recorded once there is room, the other jobs run then, the worker never exits, nothing fails."""
    client = small_redis.client()
    worker = start_cli(small_bench, "worker")
    try:
        running = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=2, site="alpha.test")
        waiting = [bench_jobs.enqueue("sample_app.tasks.echo", record_id=str(n), site="alpha.test") for n in range(3)]
        wait_for(lambda: calls(small_bench, "sleep_start"), 30, "the job to start")
        make_full(client)
        full_since = time.monotonic()
        wait_for(lambda: calls(small_bench, "sleep_end"), 10, "the job to end while Redis is full")
        time.sleep(20 - (time.monotonic() - full_since))  # past ALIVE_TTL_S (15 s)
        assert worker.poll() is None, "the worker exited in a full Redis:\n" + worker.communicate()[0][-3000:]
        assert client.hget(running.key, "status") == b"started", "its success waits for room"  # type: ignore[union-attr]
        make_room(client)
        jobs = [running, *waiting]
        wait_for(lambda: all(client.hget(j.key, "status") == b"finished" for j in jobs), 60, "every job to finish")  # type: ignore[union-attr]
        assert client.zcard(f"rq:failed:{running.origin}") == 0  # type: ignore[union-attr]
        echoes = Counter(c["record_id"] for c in calls(small_bench, "echo"))
        assert echoes == Counter({"0": 1, "1": 1, "2": 1}), echoes
        assert len(calls(small_bench, "sleep_end")) == 1
    finally:
        kill_tree(worker)
        output = worker.communicate()[0]
    assert "Redis is full and refuses writes" in output, output[-3000:]
    assert "unhandled exception" not in output.lower(), output[-3000:]


def test_a_step_a_barely_full_redis_keeps_refusing_backs_off_and_logs_its_return_once(
    bench: Bench, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis takes the small write that tells it answers, but refuses the step's bigger one: the step's retries
    back off (1, 2, 4 ... s) instead of spinning, and "answers again" is logged once, when the step went through
    (a worker spinning on its registration logged 2,200 lines in 30 s)."""
    import logging

    from bench_jobs.core.config import load_bench_settings
    from bench_jobs.core.connection import connect
    from bench_jobs.worker import outage
    from bench_jobs.worker.serve import BenchWorker, worker_queue

    use_bench(bench)
    settings = load_bench_settings(bench)
    conn = connect(settings)
    worker = BenchWorker([worker_queue(conn, settings, "default")], connection=conn)
    slept: list[float] = []
    monkeypatch.setattr(outage.time, "sleep", slept.append)
    refusals = iter(range(4))

    def step() -> str:
        if next(refusals, None) is not None:
            raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'")
        return "registered"

    with caplog.at_level(logging.INFO, logger="rq.worker.bench_jobs"):
        assert worker._until_taken(step) == "registered"
    assert slept == [0.0, 1.0, 2.0, 4.0]
    lines = [record.getMessage() for record in caplog.records]
    assert sum("answers again" in line for line in lines) == 1, lines
    assert sum("Redis is full" in line for line in lines) == 1, lines
