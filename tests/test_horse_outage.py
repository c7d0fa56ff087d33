"""A work-horse's outcome in an outage, in both horse modes: a horse that dies while Redis refuses writes has its
job failed once Redis takes writes again (fork-per-job left it `started` while its worker lived: RQ's monitor
only logged the refused write), and a job whose function returned is never failed for "running past its
timeout" while its outcome waits for Redis (the worker stops the timeout once the horse says `recording`).

The worker runs in a subprocess with BenchJob.perform replaced by one that fills the test's own Redis
(CONFIG SET maxmemory 1) at the chosen moment; the test gives it room back."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq.job import Job
from support import RedisServer, cli_env, make_bench, start_redis, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench

pytestmark = pytest.mark.slow

SITE = "alpha.test"
MODES = ["horse", "fork-per-job"]

# `how`: `die` fills Redis then kills the horse before the function runs; `return` runs the function, then
# fills Redis (its outcome is refused); `ignore` blocks SIGALRM and sleeps (the horse ignores its timeout).
WORKER_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    import redis
    from bench_jobs.core.bench import find_bench
    from bench_jobs.core.config import load_bench_settings
    from bench_jobs.core.connection import connect
    from bench_jobs.core.context import use_bench
    from bench_jobs.jobs.rq_job import BenchJob
    from bench_jobs.worker.horse import HorseWorker
    from bench_jobs.worker.serve import BenchWorker, ForkPerJobWorker, worker_queue

    mode, how, sock = sys.argv[1:4]
    perform = BenchJob.perform

    def fill():
        redis.Redis(unix_socket_path=sock).config_set("maxmemory", 1)

    def patched(self):
        if how == "die":
            fill()
            os._exit(1)
        if how == "ignore":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
        value = perform(self)
        fill()
        return value

    BenchJob.perform = patched
    HorseWorker.horse_timeout_grace_s = 1
    bench = find_bench()
    use_bench(bench)
    settings = load_bench_settings(bench)
    conn = connect(settings)
    worker_class = ForkPerJobWorker if mode == "fork-per-job" else BenchWorker
    worker = worker_class([worker_queue(conn, settings, "default")], connection=conn, job_monitoring_interval=1)
    worker.work(burst=False)
    """
)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it fills (maxmemory 1)."""
    server = start_redis(tmp_path / "own-redis")
    yield server
    server.stop()


@pytest.fixture
def own_bench(tmp_path: Path, own_redis: RedisServer) -> Bench:
    bench = make_bench(tmp_path / "bench", own_redis.url)
    use_bench(bench)
    return bench


def start_worker(bench: Bench, server: RedisServer, mode: str, how: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, mode, how, str(server.socket)],
            env=cli_env(bench),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def full(client: redis.Redis) -> bool:
    return client.config_get("maxmemory")["maxmemory"] == "1"


def reason(job: Job) -> str:
    result = job.latest_result()
    return (result.exc_string or "") if result else ""


def stop(worker: subprocess.Popen[bytes], log: Path) -> str:
    worker.kill()
    worker.wait(30)
    return log.read_text(errors="replace")


@pytest.mark.parametrize("mode", MODES)
def test_a_horse_that_dies_while_redis_is_full_has_its_job_failed_once_there_is_room(
    own_bench: Bench, own_redis: RedisServer, tmp_path: Path, mode: str
) -> None:
    client = own_redis.client()
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site=SITE)
    assert job is not None
    log = tmp_path / "worker.log"
    worker = start_worker(own_bench, own_redis, mode, "die", log)
    try:
        wait_for(lambda: full(client), 60, "the horse to fill Redis")
        time.sleep(3)  # the worker's failure of the job is refused meanwhile
        assert job.get_status(refresh=True) == "started"
        client.config_set("maxmemory", 0)
        wait_for(lambda: job.get_status(refresh=True) == "failed", 30, "the job to fail once there is room")
        assert "Work-horse terminated unexpectedly" in reason(job) and "exit code 1" in reason(job), reason(job)
        assert client.zcard(f"rq:wip:{job.origin}") == 0, "no longer started"
        assert worker.poll() is None
    finally:
        stop(worker, log)


@pytest.mark.parametrize("mode", MODES)
def test_a_job_that_returned_is_not_failed_for_its_timeout_while_redis_holds_its_outcome(
    own_bench: Bench, own_redis: RedisServer, tmp_path: Path, mode: str
) -> None:
    """timeout 2 s, grace 1 s: Redis stays full for 6 s once the function returned."""
    client = own_redis.client()
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site=SITE, timeout=2)
    assert job is not None
    log = tmp_path / "worker.log"
    worker = start_worker(own_bench, own_redis, mode, "return", log)
    try:
        wait_for(lambda: full(client), 60, "the job to return and Redis to fill")
        time.sleep(6)
        assert job.get_status(refresh=True) == "started", "its outcome waits for room"
        client.config_set("maxmemory", 0)
        wait_for(lambda: job.get_status(refresh=True) != "started", 30, "the job's outcome")
        assert job.get_status(refresh=True) == "finished", reason(job)
        assert job.return_value(refresh=True) == {"record_id": "x", "site": SITE, "extra": {}}
        assert client.zcard(f"rq:failed:{job.origin}") == 0
        assert worker.poll() is None
    finally:
        output = stop(worker, log)
    assert "ran past its timeout" not in output, output[-3000:]


def test_a_fork_per_job_horse_that_ignores_its_timeout_is_killed_after_the_grace(
    own_bench: Bench, own_redis: RedisServer, tmp_path: Path
) -> None:
    """The worker's own monitor (RQ's replaced) still kills a horse stuck past its timeout plus the grace."""
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site=SITE, timeout=1)
    assert job is not None
    log = tmp_path / "worker.log"
    worker = start_worker(own_bench, own_redis, "fork-per-job", "ignore", log)
    try:
        wait_for(lambda: job.get_status(refresh=True) == "failed", 30, "the stuck job to fail")
        assert "killed by worker" in reason(job) and "signal 9" in reason(job), reason(job)
        assert worker.poll() is None
    finally:
        stop(worker, log)
