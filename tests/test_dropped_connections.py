"""A dropped connection or a lost reply anywhere in a job's life (issue 17, items 5 and 2): the take, the claim,
the horse's preparation and the record of the outcome; and a transaction refused whole at its EXEC by a Redis
that filled up meanwhile. An idempotent step is sent again; any other is looked
up first (worker/lost_write.py), so the job runs once, is recorded once, and never fails without running.

Each test runs a worker's steps in this process, in the order the worker and its horse run them, and cuts
the connection at one of them from a separate admin client: CLIENT KILL TYPE normal (a dropped connection),
or a frozen redis-server while the client's reply timeout runs out (a write Redis runs after the client gave
up on its reply, as after a stall)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.utils import now
from support import RedisServer

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.worker.recovery import NOT_STARTED_FIELD
from bench_jobs.worker.serve import BenchWorker, worker_queue
from bench_jobs.worker.take import intermediate_key, taker

KEYS = Keys("testbench")
CUT_AFTER_S = 0.5
STALL_S = 2.0


@contextlib.contextmanager
def reply_lost(redis_server: RedisServer, conn: redis.Redis) -> Iterator[None]:
    """Freeze the redis-server for STALL_S (SIGSTOP), and drop `conn`'s connections after CUT_AFTER_S, while
    what they sent waits unread: Redis runs it as it wakes, and the reply is lost."""
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    cutter = threading.Timer(CUT_AFTER_S, conn.connection_pool.disconnect)
    waker = threading.Timer(STALL_S, os.kill, (pid, signal.SIGCONT))
    cutter.start()
    waker.start()
    try:
        yield
    finally:
        cutter.join()
        waker.join()
        os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def dropped_mid_write(redis_server: RedisServer) -> Iterator[None]:
    """Writes paused (CLIENT PAUSE WRITE) so the block's next write waits in Redis, then every connection but
    the admin's dropped (CLIENT KILL TYPE normal) while it waits, then writes resumed."""
    admin = redis_server.client()
    admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")

    def drop() -> None:
        admin.client_kill_filter(_type="normal", skipme=True)
        admin.execute_command("CLIENT", "UNPAUSE")

    dropper = threading.Timer(CUT_AFTER_S, drop)
    dropper.start()
    try:
        yield
    finally:
        dropper.join()
        admin.close()


@contextlib.contextmanager
def claim_reply_lost(redis_server: RedisServer, worker: BenchWorker) -> Iterator[None]:
    """The redis-server frozen (SIGSTOP) for STALL_S just as the claim's transaction goes out (the claim writes
    the worker's state last, in its MULTI), with that connection's reply timeout cut to CUT_AFTER_S: Redis runs
    the claim as it wakes, after the worker gave up on its reply. The claim being under WATCH, redis-py raises
    the lost reply as a WatchError."""
    pid = redis_server.process.pid
    waker = threading.Timer(STALL_S, os.kill, (pid, signal.SIGCONT))
    set_state = worker.set_state

    def freeze_at_claim(state: str, pipeline: Any = None) -> None:
        set_state(state, pipeline)
        if pipeline is not None and not waker.is_alive():
            pipeline.connection.socket_timeout = CUT_AFTER_S
            pipeline.connection._sock.settimeout(CUT_AFTER_S)
            os.kill(pid, signal.SIGSTOP)
            waker.start()

    worker.set_state = freeze_at_claim  # type: ignore[method-assign]
    try:
        yield
    finally:
        worker.set_state = set_state  # type: ignore[method-assign]
        with contextlib.suppress(RuntimeError):  # never started
            waker.join()
        os.kill(pid, signal.SIGCONT)


EXEC = b"*1\r\n$4\r\nEXEC\r\n"


@contextlib.contextmanager
def full_at_exec(redis_server: RedisServer) -> Iterator[None]:
    """The next transaction's MULTI and commands go out and are queued while Redis has room; its EXEC is held
    back on the wire until Redis is full (maxmemory 1 under noeviction), so Redis refuses the transaction whole
    at EXEC ("EXECABORT ... OOM"), as when a transaction's own queued commands fill the last bytes of memory.
    Room again CUT_AFTER_S later."""
    admin = redis_server.client()
    admin.config_set("maxmemory-policy", "noeviction")
    send = redis.connection.AbstractConnection.send_packed_command
    freer = threading.Timer(CUT_AFTER_S, admin.config_set, ("maxmemory", 0))

    def exec_once_full(connection: Any, command: Any, check_health: bool = True) -> None:
        packed = command.encode() if isinstance(command, str) else b"".join(command)
        if freer.is_alive() or freer.finished.is_set() or not packed.endswith(EXEC) or packed == EXEC:
            send(connection, command, check_health)
            return
        send(connection, [packed[: -len(EXEC)]], check_health)
        threading.Event().wait(CUT_AFTER_S)  # the commands are queued (Redis had room)
        admin.config_set("maxmemory", 1)
        freer.start()
        send(connection, [EXEC], False)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(redis.connection.AbstractConnection, "send_packed_command", exec_once_full)
            yield
    finally:
        with contextlib.suppress(RuntimeError):  # never started
            freer.join()
        admin.config_set("maxmemory", 0)
        admin.close()


def a_worker(bench: Bench) -> tuple[BenchWorker, Any]:
    use_bench(bench)
    settings = load_bench_settings(bench)
    conn = connect(settings)
    queue = worker_queue(conn, settings, "default")
    worker = BenchWorker([queue], connection=conn, name="cut-off-worker")
    worker.register_birth()
    return worker, queue


def take(worker: BenchWorker) -> tuple[Job, Any]:
    token = taker.set(worker.name)
    try:
        found = worker.queue_class.dequeue_any(
            worker.queues, None, connection=worker.connection, job_class=worker.job_class, serializer=worker.serializer
        )
    finally:
        taker.reset(token)
    assert found is not None, "the job was taken"
    return found  # type: ignore[no-any-return]


def run_in_horse(worker: BenchWorker, job: Job, queue: Any, execution: Any, cut: Any = None) -> None:
    """RQ's perform_job, step by step as the horse runs it, with `cut` called just before the outcome."""
    worker.prepare_job_execution(job)
    job.started_at = now()
    returned = job.perform()
    if cut is not None:
        with cut():
            worker._finalize_success(job, queue, execution, returned)
    else:
        worker._finalize_success(job, queue, execution, returned)


def runs(bench: Bench, record_id: str) -> int:
    """How many times sample_app.tasks.echo ran for `record_id`."""
    path = bench.logs_dir / "alpha.test" / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(r["event"] == "echo" and r.get("record_id") == record_id for r in map(json.loads, lines))


def outcomes(client: redis.Redis, job: Job) -> int:
    return len(client.xrange(f"rq:results:{job.id}"))


def test_a_connection_dropped_during_the_horses_preparation_neither_fails_nor_reruns_the_job(
    bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """The chaos run's one failure: `Connection reset by peer` in RQ's preparation inside the horse failed the
    job without running it."""
    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="dropped", site="alpha.test")
    job, queue = take(worker)
    execution = worker.prepare_execution(job)
    with dropped_mid_write(redis_server):
        worker.prepare_job_execution(job)
    run_in_horse(worker, job, queue, execution)
    assert job.get_status(refresh=True) == "finished"
    assert runs(bench, "dropped") == 1 and outcomes(redis_client, job) == 1


def test_connections_dropped_at_every_step_of_a_jobs_life_run_it_once(
    bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """The take, the claim, the preparation and the outcome, each cut off while its write waits in Redis."""
    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="every-step", site="alpha.test")
    try:
        with dropped_mid_write(redis_server):
            job, queue = take(worker)
    except (redis.ConnectionError, redis.TimeoutError):
        job, queue = take(worker)  # the worker's loop takes again: the cut take never ran
    with dropped_mid_write(redis_server):
        execution = worker.prepare_execution(job)
    run_in_horse(worker, job, queue, execution, lambda: dropped_mid_write(redis_server))
    assert job.get_status(refresh=True) == "finished"
    assert runs(bench, "every-step") == 1 and outcomes(redis_client, job) == 1
    assert redis_client.zcard(queue.started_job_registry.key) == 0


def test_an_outcome_whose_reply_was_lost_after_it_landed_is_recorded_once(
    bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """The reply times out while Redis is frozen, and Redis runs the transaction as it wakes: sent again
    blindly, the job's success was recorded twice (two results)."""
    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="landed", site="alpha.test")
    job, queue = take(worker)
    execution = worker.prepare_execution(job)
    run_in_horse(worker, job, queue, execution, lambda: reply_lost(redis_server, worker.connection))
    assert job.get_status(refresh=True) == "finished"
    assert outcomes(redis_client, job) == 1, "recorded once"
    assert runs(bench, "landed") == 1


def test_a_claim_whose_reply_was_lost_after_it_landed_goes_on_with_that_claim(
    bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """Before, the worker settled the job of a claim that raised: a claim that had landed was handed to RQ's
    abandoned-job handling, which failed the job without running it."""
    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="claimed", site="alpha.test")
    job, queue = take(worker)
    with reply_lost(redis_server, worker.connection):
        execution = worker.prepare_execution(job)
    members = redis_client.zrange(queue.started_job_registry.key, 0, -1)
    assert members == [execution.composite_key.encode()], "one claim, the one that landed"
    run_in_horse(worker, job, queue, execution)
    assert job.get_status(refresh=True) == "finished" and runs(bench, "claimed") == 1


def test_a_claim_that_landed_as_its_connection_dropped_is_run_not_left_started(
    bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """The chaos run's lost job (`--fault drop`): the claim's reply was lost after it landed, redis-py raised
    that as a WatchError (the claim WATCHes the taken hash), the worker took it for a rival write, claimed again,
    found the job no longer taken by it and left it: status `started`, in the started registry, never run."""
    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="claim-dropped", site="alpha.test")
    job, queue = take(worker)
    with claim_reply_lost(redis_server, worker):
        execution = worker.prepare_execution(job)
    members = redis_client.zrange(queue.started_job_registry.key, 0, -1)
    assert members == [execution.composite_key.encode()], "one claim, the one that landed"
    run_in_horse(worker, job, queue, execution)
    assert job.get_status(refresh=True) == "finished" and runs(bench, "claim-dropped") == 1
    assert redis_client.zcard(queue.started_job_registry.key) == 0


def test_a_transaction_refused_at_exec_by_a_full_redis_neither_fails_the_job_nor_stops_the_worker(
    bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """`chaos --fault full`'s two jobs failed with no kill: a transaction queued while Redis had room and sent
    to EXEC once it was full is refused whole, which redis-py raises as ExecAbortError, not OutOfMemoryError;
    in the horse that failed the job (its success, or its preparation before it ran), in the worker it quit."""
    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="full-at-exec", site="alpha.test")
    job, queue = take(worker)
    with full_at_exec(redis_server):
        execution = worker.prepare_execution(job)
    with full_at_exec(redis_server):
        worker.prepare_job_execution(job)
    job.started_at = now()
    returned = job.perform()
    with full_at_exec(redis_server):
        worker._finalize_success(job, queue, execution, returned)
    assert job.get_status(refresh=True) == "finished"
    assert runs(bench, "full-at-exec") == 1 and outcomes(redis_client, job) == 1
    assert redis_client.zcard(queue.started_job_registry.key) == 0


def test_a_retry_whose_record_was_cut_off_is_resent_as_the_same_retry(
    bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """RQ's Job.retry counts retries_left down in memory before its writes: each resend of a cut-off retry
    counted it down again, so a job with retries left was failed for good (`chaos --fault full`, whose
    refusals last seconds, failed flaky jobs after their first attempt)."""
    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.fail", message="first attempt", retry=1, site="alpha.test")
    job, queue = take(worker)
    execution = worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    job.started_at = now()
    try:
        job.perform()
    except Exception:
        exc_info = sys.exc_info()
    job.ended_at = now()
    with dropped_mid_write(redis_server):
        worker._finalize_failure(job, queue, execution, exc_info)
    job.refresh()
    assert job.get_status() == "scheduled" and job.retries_left == 0, "retried once, as asked"
    assert redis_client.zcard(queue.scheduled_job_registry.key) == 1
    assert outcomes(redis_client, job) == 0, "no failure recorded"


def test_a_take_whose_reply_was_lost_gives_its_job_back_before_the_next_take(
    bench: Bench, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    """A taker that lives is never judged by recovery: the job a lost take moved would wait in the
    intermediate list until the worker died."""
    worker, queue = a_worker(bench)
    token = taker.set(worker.name)
    try:  # an empty sweep: due retries are looked for at most once a second, so the next sweep only takes
        worker.queue_class.dequeue_any(worker.queues, None, connection=worker.connection)
    finally:
        taker.reset(token)
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="taken", site="alpha.test")
    assert job is not None
    with reply_lost(redis_server, worker.connection), pytest.raises((redis.TimeoutError, redis.ConnectionError)):
        take(worker)
    assert redis_client.lrange(intermediate_key(queue.key), 0, -1) == [job.id.encode()], "the take landed"
    again, _ = take(worker)
    assert again.id == job.id
    assert redis_client.hget(KEYS.taken, job.id) == worker.name.encode()


def test_a_returned_job_is_recorded_in_one_round_trip(bench: Bench, redis_client: redis.Redis) -> None:
    """Item 2: between the function's return and the transaction that records its outcome and ends the claim,
    the horse sends nothing (RQ first WATCHed the job's dependents set): a kill in that window runs the job
    again, so the window is as short as one write."""
    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="window", site="alpha.test")
    job, queue = take(worker)
    execution = worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    job.started_at = now()
    returned = job.perform()
    redis_client.config_resetstat()
    worker._finalize_success(job, queue, execution, returned)
    stats = redis_client.info("commandstats")
    sent = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
    sent.pop("info", None)
    assert sent.get("multi") == 1 and sent.get("exec") == 1
    assert "watch" not in sent, f"a round trip before the outcome: {sent}"
    assert job.get_status(refresh=True) == "finished" and outcomes(redis_client, job) == 1


def test_a_fence_the_acl_refuses_says_it_is_not_sure(redis_client: redis.Redis, redis_server: Any) -> None:
    """A bench's ACL user may not run CLIENT KILL: the fence must say so (the outcome's lookup then waits for a
    write still on its way), never pass for a kill that happened."""
    from bench_jobs.jobs.lost_reply import fence

    victim = redis.Redis(unix_socket_path=str(redis_server.socket), protocol=3)
    victim.ping()
    victim_id = int(victim.client_id())
    redis_client.execute_command("ACL", "SETUSER", "no-kill", "on", ">pw", "~*", "&*", "+@all", "-client|kill")
    try:
        limited = redis.Redis(unix_socket_path=str(redis_server.socket), username="no-kill", password="pw")
        assert fence(limited, [(victim_id, None)]) is False
        assert victim.ping(), "the refused kill left it alive"
        assert fence(redis_client, [(victim_id, None)]) is True
        assert fence(redis_client, [(victim_id, None)]) is True, "gone already: sure all the same"
    finally:
        redis_client.execute_command("ACL", "DELUSER", "no-kill")


def test_a_claim_a_barely_full_redis_keeps_refusing_backs_off(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis takes the worker's small alive write but refuses its claim's transaction at EXEC, again and again:
    the claim is retried after 1, 2, 4 ... s, not in a tight loop of fences, lookups and claims."""
    import redis.client

    from bench_jobs.worker import serve

    worker, queue = a_worker(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="claim-backs-off", site="alpha.test")
    job, queue = take(worker)
    real_execute = redis.client.Pipeline.execute
    refusals = iter(range(3))

    def refuse_the_claim(self: redis.client.Pipeline, raise_on_error: bool = True) -> Any:
        claiming = any(NOT_STARTED_FIELD in map(str, args) for args, _ in self.command_stack)
        if claiming and next(refusals, None) is not None:
            self.reset()
            raise redis.exceptions.ExecAbortError("EXECABORT Transaction discarded because of: OOM command not allowed")
        return real_execute(self, raise_on_error)

    slept: list[float] = []
    monkeypatch.setattr(redis.client.Pipeline, "execute", refuse_the_claim)
    monkeypatch.setattr(serve.time, "sleep", slept.append)
    execution = worker.prepare_execution(job)
    assert slept == [0.0, 1.0, 2.0]
    assert redis_client.zscore(queue.started_job_registry.key, execution.composite_key) is not None
