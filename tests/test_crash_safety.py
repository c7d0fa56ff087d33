"""Nothing lost, nothing completed twice, nothing left running: a worker SIGKILLed at any instant (DESIGN §7).

Each test puts Redis in the state a kill leaves at one instant of a job's life, or kills a real worker there,
and checks who settles the job: back to its queue, retried, or failed with a reason; never in limbo.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from support import run_cli, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.jobs.liveness import pid_lives
from bench_jobs.jobs.queues import BenchQueue
from bench_jobs.worker.recovery import NOT_STARTED_FIELD, recover_orphans
from bench_jobs.worker.serve import BenchWorker, worker_queue
from bench_jobs.worker.take import WorkerQueue, intermediate_key, recover_taken, taker

KEYS = Keys("testbench")


def calls(bench: Bench, event: str) -> list[dict[str, Any]]:
    path = bench.logs_dir / "alpha.test" / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record["event"] == event]


def queues_of(bench: Bench, names: list[str]) -> tuple[redis.Redis, list[BenchQueue]]:
    use_bench(bench)
    settings = load_bench_settings(bench)
    conn = connect(settings)
    return conn, [worker_queue(conn, settings, name) for name in names]


def take_as(worker_name: str, queues: list[BenchQueue], conn: redis.Redis) -> Any:
    token = taker.set(worker_name)
    try:
        return WorkerQueue.dequeue_any(queues, None, connection=conn)
    finally:
        taker.reset(token)


@pytest.mark.parametrize("served", [["long"], ["short", "default", "long"]], ids=["one queue", "three queues"])
def test_a_job_taken_by_a_worker_killed_before_claiming_it_goes_back_to_the_front(
    bench: Bench, redis_client: redis.Redis, served: list[str]
) -> None:
    """RQ's several-queue BLPOP left the id in no list between the pop and the claim: a kill there lost it."""
    conn, queues = queues_of(bench, served)
    first = bench_jobs.enqueue("sample_app.tasks.echo", record_id="1", queue="long", site="alpha.test")
    second = bench_jobs.enqueue("sample_app.tasks.echo", record_id="2", queue="long", site="alpha.test")
    job, queue = take_as("ghost-worker", queues, conn)  # ... and the worker is SIGKILLed right here
    assert job.id == first.id and queue.name == "testbench:long"
    assert redis_client.lrange(intermediate_key(queue.key), 0, -1) == [first.id.encode()]
    assert redis_client.hget(KEYS.taken, first.id) == b"ghost-worker"
    assert recover_taken(conn, queue, KEYS) == 1
    assert queue.get_job_ids() == [first.id, second.id], "back at the front, in its order"
    assert redis_client.llen(intermediate_key(queue.key)) == 0 and not redis_client.hexists(KEYS.taken, first.id)
    assert recover_taken(conn, queue, KEYS) == 0 and queue.get_job_ids() == [first.id, second.id], "once"


def test_a_job_taken_by_a_live_worker_is_left_to_it(bench: Bench, redis_client: redis.Redis) -> None:
    conn, queues = queues_of(bench, ["short", "default"])
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="1", site="alpha.test")
    redis_client.set(KEYS.worker_alive("busy-worker"), "elsewhere|other-machine|1", ex=15)
    _, queue = take_as("busy-worker", queues, conn)
    assert recover_taken(conn, queue, KEYS) == 0
    assert queue.get_job_ids() == [] and redis_client.llen(intermediate_key(queue.key)) == 1


def test_a_claimed_job_whose_worker_died_before_the_horse_goes_back_to_the_front(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """RQ wrote `started` only in the horse: a kill between the claim and the fork left a started-registry
    member whose job said `queued`, and recovery then dropped the member: the job was in no list at all. The
    claim now writes `started` and the not-started mark at once; its function never ran, so recovery puts it
    back at the front of its queue, with or without retries, its retries untouched (it used to be failed as
    abandoned, or to spend a retry)."""
    conn, queues = queues_of(bench, ["short", "default", "long"])
    plain = bench_jobs.enqueue("sample_app.tasks.echo", record_id="plain", site="alpha.test")
    retried = bench_jobs.enqueue("sample_app.tasks.echo", record_id="retried", retry=1, site="alpha.test")
    waiting = bench_jobs.enqueue("sample_app.tasks.echo", record_id="waiting", site="alpha.test")
    worker = BenchWorker(queues, connection=conn, name="doomed-worker")  # never registered: as good as dead
    for expected in (plain, retried):
        token = taker.set(worker.name)
        try:
            job, queue = worker.queue_class.dequeue_any(worker.queues, None, connection=conn)
        finally:
            taker.reset(token)
        assert job.id == expected.id
        worker.prepare_execution(job)  # ... and the worker is SIGKILLed before it forks the horse
        assert job.get_status(refresh=True) == "started"
        assert redis_client.llen(intermediate_key(queue.key)) == 0 and not redis_client.hexists(KEYS.taken, job.id)
    assert recover_orphans(conn, queue, KEYS) == 2
    for job in (plain, retried):
        assert job.get_status(refresh=True) == "queued", "never called: queued again, not failed"
        assert job.latest_result() is None
        assert not redis_client.hexists(job.key, NOT_STARTED_FIELD)
    assert redis_client.hget(retried.key, "retries_left") == b"1", "no retry spent on a run that never happened"
    ids = queue.get_job_ids()
    assert sorted(ids[:2]) == sorted([plain.id, retried.id]) and ids[2:] == [waiting.id], "at the front"
    assert redis_client.zcard(queue.started_job_registry.key) == 0
    assert recover_orphans(conn, queue, KEYS) == 0 and queue.get_job_ids() == ids, "once"


def test_a_worker_gives_back_at_start_the_jobs_a_dead_worker_took(bench: Bench, redis_client: redis.Redis) -> None:
    conn, queues = queues_of(bench, ["short", "default", "long"])
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="taken", site="alpha.test")
    take_as("ghost-worker", queues, conn)
    result = run_cli("worker", "--burst", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert job.get_status(refresh=True) == "finished"
    assert [c["record_id"] for c in calls(bench, "echo")] == ["taken"]
    assert "died before starting it; back at the front" in result.stdout + result.stderr


def test_a_zombie_counts_as_dead() -> None:
    """A SIGKILLed worker nobody has reaped yet still answers kill(0)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert pid_lives(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: not pid_lives(child.pid), 5, "the zombie to count as dead")
    assert child.poll() is not None or Path(f"/proc/{child.pid}").exists()
    child.wait()


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = {int(c) for c in (task / "children").read_text().split()}
                todo += sorted(children - found)
                found |= children
    return found


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [False, True], ids=["parent only", "whole group"])
def test_nothing_a_sigkilled_worker_forked_outlives_it_and_the_job_completes_once(
    bench: Bench, redis_client: redis.Redis, workers: Any, whole_group: bool
) -> None:
    """The horse has a process group of its own, so it survived both kinds of kill and finished the job while
    recovery retried it: two completions. RQ's retry scheduler survived too, holding its locks."""
    common = bench.common_config_path
    common.write_text(
        common.read_text().replace("scheduler_tick_interval", "retry_intervals = [1]\nscheduler_tick_interval")
    )
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=4, retry=2, site="alpha.test")
    process = workers("--queue", "short,default")
    wait_for(lambda: calls(bench, "sleep_start"), 30, "the job to start")
    horse = calls(bench, "sleep_start")[0]["pid"]
    wait_for(lambda: horse in descendants(process.pid) and len(descendants(process.pid)) >= 2, 10, "the scheduler")
    forked = descendants(process.pid)
    if whole_group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    wait_for(lambda: not any(pid_lives(pid) for pid in forked), 5, f"every process the worker forked ({forked}) to die")
    time.sleep(5)  # the horse would have finished its 4 s sleep by now
    assert calls(bench, "sleep_end") == [], "the killed horse never completed the job"
    if not whole_group:  # SIGTERMed by the kernel, RQ's scheduler released its locks (SIGKILLed, it cannot)
        wait_for(lambda: not redis_client.keys("rq:scheduler-lock:*"), 5, "RQ's scheduler to release its locks")
    workers("--queue", "short,default")
    wait_for(lambda: job.get_status(refresh=True) == "finished", 60, "the job to be retried and to finish")
    time.sleep(2)
    assert len(calls(bench, "sleep_end")) == 1, "completed once, by its retry"


@pytest.mark.slow
def test_pool_workers_never_turn_a_success_into_a_failure(bench: Bench, redis_client: redis.Redis) -> None:
    """A pool worker's maintenance used plain RQ queues (pickle) and judged jobs by time: siblings' finished
    jobs were moved to failed as abandoned."""
    use_bench(bench)
    jobs = [
        bench_jobs.enqueue(
            "sample_app.tasks.sleep", seconds=0.02 * (i % 5), queue=("short", "default")[i % 2], site="alpha.test"
        )
        for i in range(300)
    ]
    result = run_cli("worker", "--burst", "--num-workers", "4", "--queue", "short,default", bench=bench, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    statuses = [job.get_status(refresh=True) for job in jobs]  # type: ignore[union-attr]
    assert statuses.count("finished") == 300, {s: statuses.count(s) for s in set(statuses)}
    assert redis_client.zcard("rq:failed:testbench:short") + redis_client.zcard("rq:failed:testbench:default") == 0
    assert len(calls(bench, "sleep_end")) == 300


@pytest.mark.slow
def test_chaos_run_loses_nothing_completes_nothing_twice_and_leaves_nothing_behind() -> None:
    """The chaos benchmark (benchmarks/chaos.py), short: SIGKILLs every ~2 s for 25 s on four kinds of worker."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from chaos import run_chaos
    finally:
        sys.path.pop(0)
    report = run_chaos(jobs=500, duration_s=25, kill_every_s=2, recovery_timeout_s=180, seed=7)
    assert sum(report.kills.values()) >= 8, report.render()
    assert report.holds, report.render()
    assert report.completed_once + report.failed_by_design + report.failed_by_kill == report.enqueued, report.render()


def test_a_stalled_worker_whose_job_was_given_back_does_not_run_it(bench: Bench, redis_client: redis.Redis) -> None:
    """Its alive key expired during a stall, so its taken job went back to the queue: the claim must see that,
    or the job would run twice (once here, once by whoever takes it from the queue)."""
    from bench_jobs.worker.serve import JobGivenBack

    conn, queues = queues_of(bench, ["short", "default"])
    queued = bench_jobs.enqueue("sample_app.tasks.echo", record_id="1", site="alpha.test")
    worker = BenchWorker(queues, connection=conn, name="stalled-worker")
    job, queue = take_as(worker.name, worker.queues, conn)
    assert recover_taken(conn, queue, KEYS) == 1
    with pytest.raises(JobGivenBack):
        worker.prepare_execution(job)
    assert queued.get_status(refresh=True) == "queued" and queue.get_job_ids() == [queued.id]
    assert redis_client.zcard(f"rq:wip:{queue.name}") == 0, "no execution was written"


def test_a_due_retry_is_queued_even_while_a_dead_schedulers_lock_holds_its_queue(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """A whole-group SIGKILL leaves RQ's scheduler lock of the queue for 61 s, and RQ looks for freed locks
    every 10 minutes: retries waited that long. Workers now move due jobs themselves, atomically."""
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="retried", site="alpha.test")
    queue = "rq:queue:testbench:default"
    redis_client.lrem(queue, 0, job.id)  # as RQ's retry leaves it: scheduled, due a second ago
    redis_client.hset(job.key, "status", "scheduled")
    redis_client.zadd("rq:scheduled:testbench:default", {job.id: int(time.time()) - 1})
    redis_client.set("rq:scheduler-lock:testbench:default", "a-dead-scheduler", ex=600)
    result = run_cli("worker", "--burst", "--queue", "default", bench=bench, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert job.get_status(refresh=True) == "finished"
    assert [c["record_id"] for c in calls(bench, "echo")] == ["retried"]
    assert redis_client.zcard("rq:scheduled:testbench:default") == 0


def test_two_movers_of_due_jobs_push_each_job_once(bench: Bench, redis_client: redis.Redis) -> None:
    from bench_jobs.worker.due import move_due_jobs

    conn, queues = queues_of(bench, ["default"])
    jobs = [bench_jobs.enqueue("sample_app.tasks.echo", record_id=str(i), site="alpha.test") for i in range(20)]
    redis_client.delete("rq:queue:testbench:default")
    redis_client.zadd("rq:scheduled:testbench:default", {job.id: int(time.time()) - 1 for job in jobs})
    moved = [move_due_jobs(conn, queues) for _ in range(2)]
    assert moved == [20, 0]
    assert sorted(queues[0].get_job_ids()) == sorted(job.id for job in jobs)
    assert {job.get_status(refresh=True) for job in jobs} == {"queued"}
