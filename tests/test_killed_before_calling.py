"""A real worker SIGKILLed at each instant between its claim of a job and the call of the job's function, and
once the function may have started: a job whose function was never called goes back to the front of its
queue and then runs exactly once, never `failed`, its retries untouched; any other is retried or failed as
abandoned, as before (recovery.py's table).

The worker runs in a subprocess that pauses at the chosen step (a method of ours replaced, in that process
only, by one that writes its pid to a file and sleeps); the test then SIGKILLs the worker's parent only (its
work-horse dies with it), and a real `worker --burst` recovers and runs what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from support import cli_env, run_cli, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.jobs.liveness import pid_lives
from bench_jobs.worker.recovery import NOT_STARTED_FIELD

pytestmark = pytest.mark.slow

# The worker, paused at `step`: `claimed` (in the worker, the claim written, the horse not yet handed the job),
# `handed-over` (in the horse, before its preparation), `prepared` (in the horse, its preparation written, the
# function not yet called), `running` (no pause: the function itself sleeps).
WORKER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    from bench_jobs.core.bench import find_bench
    from bench_jobs.core.config import load_bench_settings
    from bench_jobs.core.connection import connect
    from bench_jobs.core.context import use_bench
    from bench_jobs.jobs.rq_job import BenchJob
    from bench_jobs.worker.outage import OutageTolerantWorker
    from bench_jobs.worker.serve import BenchWorker, ForkPerJobWorker, worker_queue

    step, mode, flag = sys.argv[1:4]

    def pause(*args, **kwargs):
        Path(flag).write_text(str(os.getpid()))
        time.sleep(600)

    where = {
        "claimed": (BenchWorker, "fork_work_horse"),
        "handed-over": (OutageTolerantWorker, "prepare_job_execution"),
        "prepared": (BenchJob, "perform"),
    }
    if step in where:
        setattr(*where[step], pause)
    bench = find_bench()
    use_bench(bench)
    settings = load_bench_settings(bench)
    conn = connect(settings)
    worker_class = ForkPerJobWorker if mode == "fork-per-job" else BenchWorker
    worker_class([worker_queue(conn, settings, "default")], connection=conn).work(burst=True)
    """
)


def calls(bench: Bench, event: str) -> list[dict[str, Any]]:
    path = bench.logs_dir / "alpha.test" / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record["event"] == event]


def kill_worker_at(bench: Bench, tmp_path: Path, step: str, mode: str = "horse") -> None:
    """Start the worker paused at `step`, wait for the pause (or, `running`, for the function to start), and
    SIGKILL the worker's parent only; returns once every process of it is gone."""
    flag = tmp_path / f"paused-{step}"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, step, mode, str(flag)],
        env=cli_env(bench),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if step == "running":
            paused = wait_for(lambda: calls(bench, "sleep_start"), 60, "the function to start")[0]["pid"]
        else:
            wait_for(lambda: flag.exists() and flag.read_text(), 60, f"the worker to pause at {step}")
            paused = int(flag.read_text())
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        wait_for(lambda: not pid_lives(paused), 10, "the paused process to die with the worker")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)


class StatusWatch:
    """Every status a job's hash shows, polled every few ms while recovery runs."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.seen: set[bytes | None] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(client, key), daemon=True)

    def _watch(self, client: redis.Redis, key: str) -> None:
        while not self._done.is_set():
            self.seen.add(client.hget(key, "status"))
            self._done.wait(0.002)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)


@pytest.mark.parametrize(
    ("step", "mode"),
    [("claimed", "horse"), ("handed-over", "horse"), ("handed-over", "fork-per-job")],
    ids=["claimed", "handed over", "handed over, fork per job"],
)
def test_a_job_killed_before_its_function_was_called_goes_back_and_runs_once(
    bench: Bench, redis_client: redis.Redis, tmp_path: Path, step: str, mode: str
) -> None:
    use_bench(bench)
    plain = bench_jobs.enqueue("sample_app.tasks.echo", record_id="plain", site="alpha.test")
    retried = bench_jobs.enqueue("sample_app.tasks.echo", record_id="retried", retry=1, site="alpha.test")
    assert plain is not None and retried is not None
    kill_worker_at(bench, tmp_path, step, mode)
    assert plain.get_status(refresh=True) == "started", "claimed, then killed"
    assert redis_client.hget(plain.key, NOT_STARTED_FIELD), "its function was never called"
    with StatusWatch(redis_client, plain.key) as watch:
        result = run_cli("worker", "--burst", "--queue", "default", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "died before calling it; back at the front" in result.stdout + result.stderr
    assert plain.get_status(refresh=True) == "finished" and retried.get_status(refresh=True) == "finished"
    assert sorted(c["record_id"] for c in calls(bench, "echo")) == ["plain", "retried"], "each ran exactly once"
    assert b"failed" not in watch.seen and watch.seen >= {b"queued", b"finished"}, watch.seen
    assert [r.type.name for r in plain.results()] == ["SUCCESSFUL"], "no failure recorded, ever"
    assert redis_client.hget(retried.key, "retries_left") == b"1", "no retry spent on a run that never happened"
    assert not redis_client.hexists(plain.key, NOT_STARTED_FIELD)


def test_a_job_killed_once_prepared_is_failed_as_abandoned_as_before(
    bench: Bench, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The horse's preparation landed, the function was about to be called: it may have started, so it is
    handled as a started job (no retries: failed as abandoned), never run a second time."""
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="prepared", site="alpha.test")
    assert job is not None
    kill_worker_at(bench, tmp_path, "prepared")
    assert not redis_client.hexists(job.key, NOT_STARTED_FIELD), "the preparation deleted the mark"
    result = run_cli("worker", "--burst", "--queue", "default", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert job.get_status(refresh=True) == "failed"
    assert "AbandonedJobError" in (job.latest_result().exc_string or "")  # type: ignore[union-attr]
    assert calls(bench, "echo") == []


def test_a_job_killed_while_its_function_runs_is_retried_as_before(
    bench: Bench, redis_client: redis.Redis, tmp_path: Path
) -> None:
    common = bench.common_config_path
    common.write_text(
        common.read_text().replace("scheduler_tick_interval", "retry_intervals = [1]\nscheduler_tick_interval")
    )
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=3, retry=1, site="alpha.test")
    assert job is not None
    kill_worker_at(bench, tmp_path, "running")
    result = run_cli("worker", "--burst", "--queue", "default", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "died before calling it" not in result.stdout + result.stderr
    assert job.get_status(refresh=True) in ("scheduled", "queued"), "retried: its function had started"
    assert redis_client.hget(job.key, "retries_left") == b"0", "the retry was spent"
    time.sleep(1.5)  # its retry falls due
    result = run_cli("worker", "--burst", "--queue", "default", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert job.get_status(refresh=True) == "finished"
    assert len(calls(bench, "sleep_start")) == 2 and len(calls(bench, "sleep_end")) == 1
