"""Every state a kill can leave a started-registry member in ends queued, scheduled (in its registry), or
failed with a reason: one test per row of the table in bench_jobs/worker/recovery.py."""

from __future__ import annotations

import time

import pytest
import redis
from rq.job import Job

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.worker.recovery import NOT_STARTED_FIELD, recover_orphans, settle_members
from bench_jobs.worker.serve import worker_queue
from bench_jobs.worker.take import WorkerQueue, intermediate_key

KEYS = Keys("testbench")
DEAD_WORKER = "killed-worker"  # no alive key: dead


def _job_left_by_a_kill(bench: Bench, status: str, retry: int = 0) -> tuple[redis.Redis, WorkerQueue, Job, str]:
    """A job of `default` whose status says `status`, in the started registry of a dead worker and, unless a
    test puts it back, in no list or other registry."""
    use_bench(bench)
    settings = load_bench_settings(bench)
    conn = connect(settings)
    queue = worker_queue(conn, settings, "default")
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id=status, retry=retry, site="alpha.test")
    assert job is not None
    conn.lrem(queue.key, 0, job.id)
    member = f"{job.id}:execution-1"
    conn.hset(job.key, mapping={"status": status, "worker_name": DEAD_WORKER})
    conn.zadd(queue.started_job_registry.key, {member: time.time() + 600})
    return conn, queue, job, member


def _in_started_registry(conn: redis.Redis, queue: WorkerQueue, member: str) -> bool:
    return conn.zscore(queue.started_job_registry.key, member) is not None


def test_a_retry_cut_off_between_its_status_and_its_registry_is_scheduled_again(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """The lost job of issue 17: RQ's Job.retry wrote `scheduled`, the kill came before its pipeline added the
    job to the scheduled registry; RQ's clean-up skipped it and dropped the member, leaving it nowhere."""
    conn, queue, job, member = _job_left_by_a_kill(bench, "scheduled", retry=2)
    assert recover_orphans(conn, queue, KEYS) == 1
    assert not _in_started_registry(conn, queue, member)
    assert job.get_status(refresh=True) == "scheduled"
    due_at = conn.zscore(queue.scheduled_job_registry.key, job.id)
    assert due_at is not None and due_at <= time.time() + 1, "due at once: the move of due jobs queues it"


def test_a_scheduled_job_already_in_its_registry_only_loses_its_stale_member(
    bench: Bench, redis_client: redis.Redis
) -> None:
    conn, queue, job, member = _job_left_by_a_kill(bench, "scheduled", retry=2)
    later = time.time() + 300
    conn.zadd(queue.scheduled_job_registry.key, {job.id: later})
    recover_orphans(conn, queue, KEYS)
    assert not _in_started_registry(conn, queue, member)
    assert conn.zscore(queue.scheduled_job_registry.key, job.id) == pytest.approx(later)


def test_a_queued_job_in_no_list_is_pushed_back_onto_its_queue(bench: Bench, redis_client: redis.Redis) -> None:
    conn, queue, job, member = _job_left_by_a_kill(bench, "queued")
    recover_orphans(conn, queue, KEYS)
    assert not _in_started_registry(conn, queue, member)
    assert queue.get_job_ids() == [job.id]
    assert job.get_status(refresh=True) == "queued"


@pytest.mark.parametrize("where", ["queue", "intermediate"])
def test_a_queued_job_still_in_a_list_is_not_pushed_twice(bench: Bench, redis_client: redis.Redis, where: str) -> None:
    conn, queue, job, member = _job_left_by_a_kill(bench, "queued")
    conn.rpush(queue.key if where == "queue" else intermediate_key(queue.key), job.id)
    recover_orphans(conn, queue, KEYS)
    assert not _in_started_registry(conn, queue, member)
    assert conn.lrange(queue.key, 0, -1) + conn.lrange(intermediate_key(queue.key), 0, -1) == [job.id.encode()]


@pytest.mark.parametrize("status", ["finished", "failed", "stopped", "canceled", "deferred"])
def test_a_settled_job_only_loses_its_stale_member(bench: Bench, redis_client: redis.Redis, status: str) -> None:
    conn, queue, job, member = _job_left_by_a_kill(bench, status)
    recover_orphans(conn, queue, KEYS)
    assert not _in_started_registry(conn, queue, member)
    assert job.get_status(refresh=True) == status
    assert queue.get_job_ids() == [] and conn.zcard(queue.scheduled_job_registry.key) == 0


def test_a_member_whose_job_is_gone_is_dropped(bench: Bench, redis_client: redis.Redis) -> None:
    conn, queue, job, member = _job_left_by_a_kill(bench, "started")
    conn.delete(job.key)
    recover_orphans(conn, queue, KEYS)
    assert not _in_started_registry(conn, queue, member)
    assert queue.get_job_ids() == []


def test_a_started_job_goes_to_rqs_abandoned_job_handling(bench: Bench, redis_client: redis.Redis) -> None:
    conn, queue, job, member = _job_left_by_a_kill(bench, "started")
    recover_orphans(conn, queue, KEYS)
    assert not _in_started_registry(conn, queue, member)
    assert job.get_status(refresh=True) == "failed"
    assert "AbandonedJobError" in (job.latest_result().exc_string or "")  # type: ignore[union-attr]


def test_a_started_job_whose_function_was_never_called_goes_back_to_the_front(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """The claim's mark names this member's execution: the horse's preparation never landed, so the function
    never ran. Back at the front (ahead of a job queued meanwhile), retries untouched, its capped place freed."""
    conn, queue, job, member = _job_left_by_a_kill(bench, "started", retry=2)
    conn.hset(job.key, NOT_STARTED_FIELD, "execution-1")
    running = f"bench_jobs:testbench:running:{job.id.split('-')[1]}"
    conn.zadd(running, {f"{job.id}|{DEAD_WORKER}": time.time() * 1000 + 30_000})
    later = bench_jobs.enqueue("sample_app.tasks.echo", record_id="later", site="alpha.test")
    assert later is not None
    assert recover_orphans(conn, queue, KEYS) == 1
    assert not _in_started_registry(conn, queue, member)
    assert queue.get_job_ids() == [job.id, later.id]
    assert conn.lrange(f"bench_jobs:testbench:fair:default:site:{job.id.split('-')[1]}", 0, 0) == [job.id.encode()]
    assert job.get_status(refresh=True) == "queued" and conn.hget(job.key, "retries_left") == b"2"
    assert not conn.hexists(job.key, NOT_STARTED_FIELD) and conn.zcard(running) == 0
    assert job.latest_result() is None and conn.zcard(queue.failed_job_registry.key) == 0


def test_a_mark_of_another_execution_proves_nothing(bench: Bench, redis_client: redis.Redis) -> None:
    """A mark left by another claim of the job says nothing about this member's run: RQ's handling as before."""
    conn, queue, job, member = _job_left_by_a_kill(bench, "started")
    conn.hset(job.key, NOT_STARTED_FIELD, "execution-2")
    recover_orphans(conn, queue, KEYS)
    assert not _in_started_registry(conn, queue, member)
    assert job.get_status(refresh=True) == "failed" and queue.get_job_ids() == []


def test_two_recoverers_of_a_never_called_job_push_it_once(bench: Bench, redis_client: redis.Redis) -> None:
    """Both read the member before either settled it: the decision and the push are one script, so the second
    finds the job queued and in its list."""
    conn, queue, job, member = _job_left_by_a_kill(bench, "started")
    conn.hset(job.key, NOT_STARTED_FIELD, "execution-1")
    assert settle_members(conn, queue, [member], time.time()) == ([], [member])
    assert settle_members(conn, queue, [member], time.time()) == ([], [])
    assert queue.get_job_ids() == [job.id] and job.get_status(refresh=True) == "queued"


def test_two_workers_recovering_one_dead_workers_job_at_once_push_it_once(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ's abandoned-job handling reads and retries each job outside any transaction: two recoveries at once
    (workers starting together after a host crash) both retried the job and pushed it twice, so it ran twice."""
    import contextlib
    import threading

    from bench_jobs.core.config_writer import update_config_file

    update_config_file(bench.common_config_path, {"retry_intervals": [0, 0]})  # a retry goes straight back
    conn, queue, job, member = _job_left_by_a_kill(bench, "started", retry=2)
    both_in = threading.Barrier(2, timeout=1.0)
    real_retry = Job.retry

    def retry_when_both_are_in(self: Job, *args: object, **kwargs: object) -> object:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_in.wait()  # without the lock both recoveries meet here; with it the second never comes
        return real_retry(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Job, "retry", retry_when_both_are_in)
    recoverers = [threading.Thread(target=recover_orphans, args=(conn, queue, KEYS)) for _ in range(2)]
    for thread in recoverers:
        thread.start()
    for thread in recoverers:
        thread.join(30)
    assert queue.get_job_ids() == [job.id], "pushed once"
    assert not _in_started_registry(conn, queue, member)
    assert Job.fetch(job.id, connection=conn).retries_left == 1
