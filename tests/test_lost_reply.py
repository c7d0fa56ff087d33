"""An enqueue whose reply a stalled Redis lost answers truthfully (issue 17, item 3): the job when its write
landed, "NOT queued" only when that is sure, else "MAY have been queued" naming the id. Before, it raised
"Timeout reading" while Redis ran the write on waking: the producer sent the job again and it ran twice."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from support import RedisServer, point_at_redis

import bench_jobs
from bench_jobs.core import connection
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.context import use_bench
from bench_jobs.errors import EXIT_REDIS, MaybeQueued, RedisUnavailable
from bench_jobs.jobs import lost_reply
from bench_jobs.worker.serve import BenchWorker, worker_queue

STALL_S = 3.0
REPLY_TIMEOUT_S = 1.0
QUEUE_KEY = "rq:queue:testbench:default"


@pytest.fixture
def impatient_bench(bench: Bench, redis_server: RedisServer) -> Bench:
    """The bench, whose client gives up on a reply after REPLY_TIMEOUT_S (the URL's option wins)."""
    point_at_redis(bench, f"unix://{redis_server.socket}?socket_timeout={REPLY_TIMEOUT_S}")
    use_bench(bench)
    return bench


@contextlib.contextmanager
def stalled(redis_server: RedisServer) -> Iterator[None]:
    """Freeze the session's redis-server for STALL_S (SIGSTOP, as a paused VM or a long DEBUG SLEEP would):
    what it has not read yet, it runs when it wakes."""
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    waker = threading.Timer(STALL_S, os.kill, (pid, signal.SIGCONT))
    waker.start()
    try:
        yield
    finally:
        waker.join()
        os.kill(pid, signal.SIGCONT)


def queued_ids(bench: Bench, client: redis.Redis) -> list[bytes]:
    return client.lrange(QUEUE_KEY, 0, -1)  # type: ignore[no-any-return]


def test_the_client_sets_its_timeouts_and_never_resends_a_write(bench: Bench) -> None:
    conn = connection.connect(load_bench_settings(bench))
    made = conn.connection_pool.make_connection()
    assert made.socket_timeout == connection.SOCKET_TIMEOUT_S
    assert made.socket_connect_timeout == connection.CONNECT_TIMEOUT_S
    assert made.retry.get_retries() == 0 and not made.retry_on_timeout


def test_a_workers_blocking_reads_wait_longer_than_their_block(bench: Bench) -> None:
    use_bench(bench)
    settings = load_bench_settings(bench)
    conn = connection.connect(settings)
    worker = BenchWorker([worker_queue(conn, settings, "default")], connection=conn)
    socket_timeout_s = worker.connection.connection_pool.connection_kwargs["socket_timeout"]
    assert socket_timeout_s > worker.dequeue_timeout


def test_a_write_that_landed_while_its_reply_was_lost_returns_the_job(
    impatient_bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="warm-up", site="alpha.test")  # an open connection
    redis_client.delete(QUEUE_KEY)
    with stalled(redis_server):
        started = time.monotonic()
        job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="stalled", site="alpha.test")
    assert job is not None and time.monotonic() - started >= STALL_S - 0.5
    assert queued_ids(impatient_bench, redis_client) == [job.id.encode()], "queued once, under its one id"


def test_a_write_cut_off_for_sure_says_not_queued(
    impatient_bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes paused (CLIENT PAUSE WRITE): the reply times out, the sending connection is killed while its
    write still waits, so the job can never land and the error may say so."""
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="warm-up", site="alpha.test")
    redis_client.delete(QUEUE_KEY)
    redis_client.execute_command("CLIENT", "PAUSE", int(STALL_S * 1000), "WRITE")
    with pytest.raises(RedisUnavailable) as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="cut", site="alpha.test")
    assert not isinstance(caught.value, MaybeQueued)
    assert caught.value.exit_code == EXIT_REDIS and "was NOT queued" in caught.value.message, caught.value.message
    time.sleep(STALL_S)
    assert queued_ids(impatient_bench, redis_client) == []
    assert [k for k in redis_client.scan_iter("rq:job:*") if b"cut" in (redis_client.hget(k, "data") or b"")] == []


def test_a_write_nobody_can_vouch_for_may_have_been_queued_and_names_its_id(
    impatient_bench: Bench, redis_client: redis.Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLIENT KILL refused by an ACL, and Redis still frozen when the wait ends: the job may land later."""
    redis_client.acl_setuser(
        "producer", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all", "-client|kill"]
    )
    point_at_redis(impatient_bench, f"unix://producer:pw@{redis_server.socket}?socket_timeout={REPLY_TIMEOUT_S}")
    monkeypatch.setattr(lost_reply, "LOST_REPLY_WAIT_S", 0.5)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="warm-up", site="alpha.test")
    redis_client.delete(QUEUE_KEY)
    with stalled(redis_server), pytest.raises(MaybeQueued) as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="unsure", site="alpha.test")
    error = caught.value
    assert error.exit_code == EXIT_REDIS and "MAY have been queued" in error.message, error.message
    assert len(error.job_ids) == 1 and error.job_ids[0] in error.message
    assert queued_ids(impatient_bench, redis_client) == [error.job_ids[0].encode()], "it did land, later"


def test_nothing_sent_says_not_queued(bench: Bench) -> None:
    point_at_redis(bench, "redis://127.0.0.1:1")
    use_bench(bench)
    with pytest.raises(RedisUnavailable) as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test")
    assert not isinstance(caught.value, MaybeQueued) and "was NOT queued" in caught.value.message


def test_a_job_that_landed_on_its_queue_but_not_in_its_sites_line_is_served_at_once(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """A pipeline cut after the queue push, before the site's line and turn: the lookup that finds the job on its
    queue also indexes it, so the take serves it without waiting for a reindex."""
    from bench_jobs.core.keys import Keys
    from bench_jobs.jobs.push import PendingJob
    from bench_jobs.worker.take import WorkerQueue, taker

    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="half", site="alpha.test")
    assert job is not None
    keys = Keys("testbench")
    redis_client.delete(*redis_client.keys(keys.fair("default") + "*"), keys.wake("default"))
    settings = load_bench_settings(bench)
    conn = connection.connect(settings)
    queue = worker_queue(conn, settings, "default")
    assert lost_reply._landed(conn, PendingJob(queue, job, at_front=False, deduplicate=False), sure=True) is True
    token = taker.set("test-taker")
    try:
        hit = WorkerQueue.dequeue_any([queue], None, connection=conn)
    finally:
        taker.reset(token)
    assert hit is not None and hit[0].id == job.id
    assert redis_client.llen(keys.wake("default")) == 1
