"""Redis going away under a running scheduler and worker: both log it, wait, and carry on (issue 5)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.utils import utcformat
from support import kill_tree, make_bench, start_cli, start_redis, wait_for, write

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_site_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.jobs.queues import rq_queue
from bench_jobs.worker.recovery import recover_orphans, requeue_taken

pytestmark = pytest.mark.slow
OUTAGE_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def finished_runs(bench: Path) -> list[dict[str, Any]]:
    path = bench / "logs" / "alpha.test" / "jobs.log"
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["status"] == "finished"]


def test_scheduler_and_worker_survive_a_redis_outage_without_double_fires(tmp_path: Path) -> None:
    port = free_port()
    server = start_redis(tmp_path / "redis", port=port)
    bench = make_bench(tmp_path / "bench", f"redis://127.0.0.1:{port}", tick_interval_s=1)
    common = bench.common_config_path
    tick = "scheduler_tick_interval = 1\n"
    common.write_text(common.read_text().replace(tick, tick + "scheduler_interval = 1\n"))  # `all` every 1 s tick
    write(bench.apps_dir / "tick_app" / "__init__.py", "")
    write(bench.apps_dir / "tick_app" / "hooks.py", 'scheduler_events = {"all": ["tick_app.jobs.beat"]}\n')
    write(bench.apps_dir / "tick_app" / "jobs.py", "def beat():\n    pass\n")
    write(bench.site_config_path("alpha.test"), 'apps = ["tick_app"]\ntimezone = "UTC"\nscheduler_enabled = true\n')
    write(bench.site_config_path("beta.test"), 'apps = ["tick_app"]\nscheduler_enabled = false\n')
    processes = [start_cli(bench, "schedule"), start_cli(bench, "worker")]
    try:
        wait_for(lambda: len(finished_runs(bench.root)) >= 2, 30, "scheduled jobs to run before the outage")
        server.client().shutdown(save=True)
        server.process.wait(10)
        down_at = time.time()
        time.sleep(OUTAGE_S)
        died = [p for p in processes if p.poll() is not None]
        assert not died, "a process died while Redis was away:\n" + "\n".join(p.communicate()[0][-3000:] for p in died)
        server = start_redis(tmp_path / "redis", port=port)
        wait_for(
            lambda: any(r["at"] > _iso(down_at + OUTAGE_S) for r in finished_runs(bench.root)),
            60,
            "a scheduled job to run after Redis came back",
        )
        runs = finished_runs(bench.root)
        assert max(Counter(r["job_id"] for r in runs).values()) == 1, "a slot ran twice"
        history = [json.loads(raw) for raw in server.client().lrange(Keys("testbench").history("alpha.test"), 0, -1)]
        queued = Counter(entry["job_id"] for entry in history if entry["status"] == "queued")
        assert queued and max(queued.values()) == 1, "a slot was queued twice"
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60)[0] for process in processes]
        assert [p.returncode for p in processes] == [0, 0]
        worker_log = outputs[1]
        assert worker_log.count("the worker waits for it") == 1, "one line per outage, not per retry"
        assert "Redis answers again" in worker_log, worker_log[-2000:]
        assert "could not connect to Redis instance" not in worker_log and "unhandled exception" not in worker_log
        scheduler_log = outputs[0]
        assert "does not answer" in scheduler_log and "answers again" in scheduler_log, scheduler_log[-2000:]
        assert scheduler_log.count("Traceback") == 0
        assert scheduler_log.lower().count("unreachable") + scheduler_log.lower().count("does not answer") <= 10, (
            "the scheduler should back off, not log every retry"
        )
    finally:
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        server.stop()


def calls(bench: Path, event: str) -> int:
    path = bench / "logs" / "alpha.test" / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(json.loads(line)["event"] == event for line in lines)


def test_worker_outlasts_an_outage_that_starts_during_a_job(tmp_path: Path) -> None:
    """The job ends while Redis is away, so its outcome cannot be written: the worker must not quit (RQ's own
    loop does), and once Redis is back the job is recorded as finished, once: a success never turns into a
    failure or a retry (RQ would record the Redis error as the job's failure)."""
    port = free_port()
    server = start_redis(tmp_path / "redis", port=port)
    bench = make_bench(tmp_path / "bench", f"redis://127.0.0.1:{port}")
    common = bench.common_config_path
    common.write_text(
        common.read_text().replace("scheduler_tick_interval", "retry_intervals = [1]\nscheduler_tick_interval")
    )
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=3, retry=1, site="alpha.test")
    worker = start_cli(bench, "worker", "--queue", "default")
    try:
        wait_for(lambda: calls(bench.root, "sleep_start") == 1, 30, "the job to start")
        server.client().shutdown(save=True)
        server.process.wait(10)
        time.sleep(8)
        assert calls(bench.root, "sleep_end") == 1, "the job ran to its end while Redis was away"
        assert worker.poll() is None, "the worker died while Redis was away:\n" + worker.communicate()[0][-3000:]
        server = start_redis(tmp_path / "redis", port=port)
        client = server.client()
        wait_for(lambda: client.hget(f"rq:job:{job.id}", "status") == b"finished", 60, "the job to be recorded")
        time.sleep(3)  # its retry, had one been made, would have run by now (retry_intervals = [1])
        assert calls(bench.root, "sleep_end") == 1, "the job that succeeded while Redis was away ran only once"
        assert client.hget(f"rq:job:{job.id}", "status") == b"finished"
        assert client.zcard(f"rq:failed:{job.origin}") == 0
        after = bench_jobs.enqueue("sample_app.tasks.echo", record_id="after", site="alpha.test")
        wait_for(lambda: client.hget(f"rq:job:{after.id}", "status") == b"finished", 30, "a new job to run")
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0]
        assert worker.returncode == 0, output[-3000:]
        assert output.count("the worker waits for it") == 1, output[-3000:]
        assert "answers again" in output and "the job's outcome is recorded when it is back" in output, output[-3000:]
        assert "Traceback" not in output and "unhandled exception" not in output, output[-3000:]
    finally:
        if worker.poll() is None:
            kill_tree(worker)
        server.stop()


def default_queue(bench: Bench) -> tuple[redis.Redis, Queue]:
    use_bench(bench)
    settings = load_site_settings(bench, "alpha.test").bench
    conn = connect(settings)
    return conn, rq_queue(conn, settings, "default")


def test_a_job_started_before_redis_restarted_is_not_judged_orphaned_during_the_grace(restarted_bench: Bench) -> None:
    """After a restart, alive keys that expired while Redis was down say nothing yet: the worker may still be
    running the job and re-mark itself within the grace. A job started after Redis came up is judged at once."""
    conn, queue = default_queue(restarted_bench)
    registry = StartedJobRegistry(queue=queue)
    before = bench_jobs.enqueue("sample_app.tasks.echo", record_id="before", site="alpha.test")
    after = bench_jobs.enqueue("sample_app.tasks.echo", record_id="after", site="alpha.test")
    now = time.time()
    for job, started in ((before, now - 120), (after, now + 5)):
        conn.hset(job.key, mapping={"status": "started", "worker_name": "gone", "started_at": utcformat(_utc(started))})
        conn.zadd(registry.key, {f"{job.id}:exec-1": now + 600})
    assert recover_orphans(conn, queue, Keys("testbench")) == 1
    assert before.get_status(refresh=True) == "started", "judged after the grace, not now"
    assert after.get_status(refresh=True) == "failed"


def test_a_job_taken_from_its_queue_as_redis_went_away_goes_back_once(restarted_bench: Bench) -> None:
    conn, queue = default_queue(restarted_bench)
    first = bench_jobs.enqueue("sample_app.tasks.echo", record_id="1", site="alpha.test")
    second = bench_jobs.enqueue("sample_app.tasks.echo", record_id="2", site="alpha.test")
    intermediate = f"{queue.key}:intermediate"
    assert conn.lmove(queue.key, intermediate) == first.id.encode()  # what RQ's dequeue does
    assert requeue_taken(conn, queue, first.id)
    assert queue.get_job_ids() == [first.id, second.id] and conn.llen(intermediate) == 0
    assert not requeue_taken(conn, queue, first.id), "never twice"
    conn.hset(second.key, "status", "started")
    conn.lrem(queue.key, 0, second.id)
    assert not requeue_taken(conn, queue, second.id), "a started job is settled elsewhere, not requeued"
    assert queue.get_job_ids() == [first.id]


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, timezone.utc)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds")
