"""A worker's work-horse runs many jobs (DESIGN §4): recycled after max_jobs_per_horse, past
max_horse_memory_mb and after any crash; a job that kills its horse fails alone; nothing of one job is seen by
the next; crash safety as with a horse per job (DESIGN §7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import redis
from rq.command import send_stop_job_command
from rq.job import Job
from support import cli_env, run_cli, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.jobs.liveness import pid_lives

pytestmark = pytest.mark.slow

SITE = "alpha.test"


def set_common(bench: Bench, **keys: object) -> None:
    """Add top-level keys to common_site_config.toml (before its [workers.*] tables)."""
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    common = bench.common_config_path
    common.write_text(common.read_text().replace("scheduler_tick_interval", lines + "scheduler_tick_interval"))


def enqueue(method: str, **kwargs: Any) -> Job:
    job = bench_jobs.enqueue(f"sample_app.tasks.{method}", site=SITE, **kwargs)
    assert job is not None
    return job


def burst(bench: Bench, *args: str) -> None:
    result = run_cli("worker", "--burst", "--queue", "default", *args, bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def seen(job: Job) -> dict[str, Any]:
    """What a whoami job saw, once it finished."""
    assert job.get_status(refresh=True) == "finished", job.latest_result()
    value = job.return_value(refresh=True)
    assert isinstance(value, dict)
    return value


def reason(job: Job) -> str:
    assert job.get_status(refresh=True) == "failed"
    result = job.latest_result()
    return (result.exc_string or "") if result else ""


def calls(bench: Bench, event: str) -> list[dict[str, Any]]:
    path = bench.logs_dir / SITE / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record["event"] == event]


def test_jobs_share_a_horse_and_a_new_one_is_forked_after_max_jobs_per_horse(
    bench: Bench, redis_client: redis.Redis
) -> None:
    set_common(bench, max_jobs_per_horse=3)
    use_bench(bench)
    jobs = [enqueue("whoami") for _ in range(7)]
    burst(bench)
    pids = [seen(job)["pid"] for job in jobs]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6], pids
    assert len({seen(job)["worker_pid"] for job in jobs}) == 1, "one worker forked them all"
    assert pids[0] not in {seen(job)["worker_pid"] for job in jobs}, "jobs run in a horse, not in the worker"


def test_a_horse_past_max_horse_memory_mb_is_recycled(bench: Bench, redis_client: redis.Redis) -> None:
    set_common(bench, max_horse_memory_mb=150)
    use_bench(bench)
    before = enqueue("whoami")
    hog = enqueue("hoard", mb=200)
    after = [enqueue("whoami") for _ in range(2)]
    burst(bench)
    assert seen(before)["rss_mb"] < 150, "the premise: a fresh horse is under the limit"
    assert hog.return_value(refresh=True) == seen(before)["pid"], "the hoarder ran in the same horse"
    assert seen(after[0])["pid"] != seen(before)["pid"], "that horse was recycled after it"
    assert seen(after[0])["pid"] == seen(after[1])["pid"], "its successor is reused"


@pytest.mark.parametrize(
    ("method", "kwargs", "expected"),
    [
        ("segfault", {}, "signal 11, SIGSEGV"),
        ("exit_now", {"code": 3}, "exit code 3"),
        ("exit_now", {"code": 0}, "exit code 0"),
        ("sigkill_self", {}, "signal 9, SIGKILL"),
    ],
    ids=["segfault", "os._exit(3)", "os._exit(0)", "OOM-killed"],
)
def test_a_job_that_takes_its_horse_down_fails_alone_and_the_next_runs_in_a_fresh_horse(
    bench: Bench, redis_client: redis.Redis, method: str, kwargs: dict[str, Any], expected: str
) -> None:
    use_bench(bench)
    first = enqueue("whoami")
    crash = enqueue(method, **kwargs)
    last = enqueue("whoami")
    burst(bench)
    assert "Work-horse terminated unexpectedly" in reason(crash) and expected in reason(crash), reason(crash)
    assert seen(first)["pid"] != seen(last)["pid"], "a fresh horse after the crash"
    assert seen(first)["worker_pid"] == seen(last)["worker_pid"], "the same worker went on"


def test_sys_exit_in_a_job_fails_it_and_its_horse_goes_on(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    first = enqueue("whoami")
    exits = enqueue("sys_exit", code=4)
    last = enqueue("whoami")
    burst(bench)
    assert "SystemExit" in reason(exits)
    assert seen(first)["pid"] == seen(last)["pid"], "SystemExit is the job's exception, not the horse's end"


def test_a_job_over_its_timeout_fails_and_the_next_runs_in_a_fresh_horse(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    first = enqueue("whoami")
    slow = enqueue("sleep", seconds=30, timeout=1)
    last = enqueue("whoami")
    started = time.monotonic()
    burst(bench)
    assert time.monotonic() - started < 20
    assert "JobTimeoutException" in reason(slow)
    assert calls(bench, "sleep_start")[0]["pid"] == seen(first)["pid"], "the slow job ran in the first job's horse"
    assert seen(first)["pid"] != seen(last)["pid"], "a horse interrupted by a timeout is not trusted again"


def test_a_horse_that_ignores_its_timeout_is_killed_by_its_worker_after_the_grace(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """RQ's monitor kills a horse at its job's timeout plus 60 s; a worker with a 1 s grace, in a subprocess."""
    use_bench(bench)
    stuck = enqueue("ignore_timeout", seconds=60, timeout=1)
    last = enqueue("whoami")
    script = textwrap.dedent(
        """
        from bench_jobs.core.bench import find_bench
        from bench_jobs.core.config import load_bench_settings
        from bench_jobs.core.connection import connect
        from bench_jobs.core.context import use_bench
        from bench_jobs.worker.serve import BenchWorker, worker_queue

        bench = find_bench()
        use_bench(bench)
        settings = load_bench_settings(bench)
        conn = connect(settings)
        worker = BenchWorker([worker_queue(conn, settings, "default")], connection=conn, job_monitoring_interval=1)
        worker.horse_timeout_grace_s = 1
        worker.work(burst=True)
        """
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], env=cli_env(bench), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - started < 20
    assert "killed by worker" in reason(stuck) and "signal 9" in reason(stuck), reason(stuck)
    assert seen(last)["pid"] != calls(bench, "ignore_timeout_start")[0]["pid"]


def test_a_sigkilled_horse_fails_its_job_and_the_worker_goes_on(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    use_bench(bench)
    warm = enqueue("whoami")
    process = workers("--queue", "default")
    wait_for(lambda: warm.get_status(refresh=True) == "finished", 30, "the first job")
    slow = enqueue("sleep", seconds=30)
    wait_for(lambda: calls(bench, "sleep_start"), 30, "the slow job to start")
    horse = calls(bench, "sleep_start")[0]["pid"]
    assert horse == seen(warm)["pid"], "the slow job runs in the horse of the first"
    os.kill(horse, signal.SIGKILL)
    wait_for(lambda: slow.get_status(refresh=True) == "failed", 30, "the killed job to fail")
    assert "signal 9, SIGKILL" in reason(slow)
    last = enqueue("whoami")
    wait_for(lambda: last.get_status(refresh=True) == "finished", 30, "the next job")
    assert seen(last)["worker_pid"] == process.pid and seen(last)["pid"] != horse
    assert process.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert calls(bench, "sleep_end") == []


def test_a_sigkilled_worker_takes_its_reused_horse_down_and_the_job_completes_once(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    common = bench.common_config_path
    common.write_text(
        common.read_text().replace("scheduler_tick_interval", "retry_intervals = [1]\nscheduler_tick_interval")
    )
    use_bench(bench)
    warm = enqueue("whoami")
    process = workers("--queue", "default")
    wait_for(lambda: warm.get_status(refresh=True) == "finished", 30, "the first job")
    job = enqueue("sleep", seconds=3, retry=1)
    wait_for(lambda: calls(bench, "sleep_start"), 30, "the job to start")
    horse = calls(bench, "sleep_start")[0]["pid"]
    assert horse == seen(warm)["pid"], "the job runs in a reused horse"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    wait_for(lambda: not pid_lives(horse), 5, "the horse to die with its worker")
    time.sleep(4)  # the horse would have finished its 3 s sleep by now
    assert calls(bench, "sleep_end") == [], "the killed horse never completed the job"
    workers("--queue", "default")
    wait_for(lambda: job.get_status(refresh=True) == "finished", 90, "the job to be retried and to finish")
    time.sleep(1)
    assert len(calls(bench, "sleep_end")) == 1, "completed once, by its retry"


def test_nothing_of_a_job_is_seen_by_the_next_in_the_same_horse(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    first = enqueue("whoami")
    messy = enqueue("leave_a_mess")
    after = bench_jobs.enqueue("sample_app.tasks.whoami", site="beta.test")
    last = enqueue("whoami")
    burst(bench)
    mess = seen(messy)
    assert (mess["leaked"], mess["cwd"], mess["site"]) == ("yes", "/", "beta.test"), "the premise: a mess was made"
    assert after is not None
    for job, site in ((after, "beta.test"), (last, SITE)):
        state = seen(job)
        assert state["pid"] == seen(first)["pid"], "the same horse"
        assert state["site"] == site and state["leaked"] is None and state["cwd"] == seen(first)["cwd"]
        assert state["rq_job_id"] == job.id and state["current_job"] == job.id


@pytest.mark.parametrize("how", ["flag", "config key"])
def test_fork_per_job_forks_a_horse_for_every_job(bench: Bench, redis_client: redis.Redis, how: str) -> None:
    if how == "config key":
        set_common(bench, fork_per_job=True)
    use_bench(bench)
    jobs = [enqueue("whoami") for _ in range(3)]
    burst(bench, *(["--fork-per-job"] if how == "flag" else []))
    assert len({seen(job)["pid"] for job in jobs}) == 3
    assert len({seen(job)["worker_pid"] for job in jobs}) == 1


def test_rqs_stop_job_command_stops_a_job_in_a_reused_horse(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    use_bench(bench)
    warm = enqueue("whoami")
    process = workers("--queue", "default")
    wait_for(lambda: warm.get_status(refresh=True) == "finished", 30, "the first job")
    slow = enqueue("sleep", seconds=30)
    wait_for(lambda: calls(bench, "sleep_start"), 30, "the slow job to start")
    assert calls(bench, "sleep_start")[0]["pid"] == seen(warm)["pid"], "the slow job runs in the first job's horse"
    send_stop_job_command(redis_client, slow.id, serializer=slow.serializer)
    wait_for(lambda: slow.get_status(refresh=True) == "stopped", 30, "the job to be stopped")
    last = enqueue("whoami")
    wait_for(lambda: last.get_status(refresh=True) == "finished", 30, "the next job")
    assert seen(last)["pid"] != seen(warm)["pid"] and process.poll() is None


def test_an_idle_worker_stops_its_horse_and_exits_within_3_s(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    use_bench(bench)
    warm = enqueue("whoami")
    process = workers("--queue", "default")
    wait_for(lambda: warm.get_status(refresh=True) == "finished", 30, "the first job")
    horse = seen(warm)["pid"]
    time.sleep(0.5)
    assert pid_lives(horse), "the horse waits for the next job"
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert time.monotonic() - began <= 3.0
    assert not pid_lives(horse), "and is stopped with its worker"


def test_the_worker_sends_heartbeats_while_a_job_runs_in_its_horse_and_shows_its_state(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    """The worker waits for its horse's answer at most job_monitoring_interval (5 s) at a time, then beats."""
    use_bench(bench)
    warm = enqueue("whoami")
    process = workers("--queue", "default")
    wait_for(lambda: warm.get_status(refresh=True) == "finished", 30, "the first job")
    slow = enqueue("sleep", seconds=8)
    wait_for(lambda: calls(bench, "sleep_start"), 30, "the slow job to start")
    assert calls(bench, "sleep_start")[0]["pid"] == seen(warm)["pid"]
    worker_key = next(key for key in redis_client.keys("rq:worker:*") if key.count(b":") == 2)
    beats = {redis_client.hget(worker_key, "last_heartbeat")}
    started = time.monotonic()
    while time.monotonic() - started < 7 and slow.get_status(refresh=True) == "started":
        beats.add(redis_client.hget(worker_key, "last_heartbeat"))
        time.sleep(0.2)
    assert len(beats) >= 2, "a heartbeat came while the job ran"
    assert redis_client.hget(worker_key, "state") == b"busy"
    wait_for(lambda: slow.get_status(refresh=True) == "finished", 30, "the slow job")
    wait_for(lambda: redis_client.hget(worker_key, "state") == b"idle", 5, "the worker to show idle again")
    assert process.poll() is None


def test_a_horse_killed_while_idle_is_replaced_and_the_next_job_runs(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    use_bench(bench)
    warm = enqueue("whoami")
    process = workers("--queue", "default")
    wait_for(lambda: warm.get_status(refresh=True) == "finished", 30, "the first job")
    os.kill(seen(warm)["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_lives(seen(warm)["pid"]), 5, "the idle horse to die")
    nxt = enqueue("whoami")
    wait_for(lambda: nxt.get_status(refresh=True) in ("finished", "failed"), 30, "the next job")
    assert seen(nxt)["pid"] != seen(warm)["pid"] and seen(nxt)["worker_pid"] == process.pid


def test_the_job_a_horse_is_handed_is_the_job_redis_holds(bench: Bench, redis_client: redis.Redis) -> None:
    """The worker hands its horse the job's hash instead of having it fetched again: it must read back as
    Job.fetch would read it (RQ's to_dict, encoded as redis-py writes it)."""
    from bench_jobs.jobs.rq_job import BenchJob
    from bench_jobs.worker.horse_link import job_hash

    use_bench(bench)
    queued = enqueue("echo", record_id="r1", retry=2, timeout=17, extra={"deep": [1, "two"]})
    job = BenchJob.fetch(queued.id, connection=redis_client, serializer=queued.serializer)
    job.meta["note"] = "kept"
    job.save_meta()
    job = BenchJob.fetch(queued.id, connection=redis_client, serializer=queued.serializer)
    handed = BenchJob(job.id, connection=redis_client, serializer=job.serializer)
    handed.restore(job_hash(job) or {})
    assert handed.to_dict() == job.to_dict()
    assert (handed.func_name, handed.args, handed.kwargs) == (job.func_name, job.args, job.kwargs)
    assert (handed.timeout, handed.retries_left, handed.meta, handed.origin) == (17, 2, {"note": "kept"}, job.origin)
    stored, handed_hash = redis_client.hgetall(job.key), job_hash(job) or {}
    assert {key: value for key, value in handed_hash.items() if key in stored} == {
        key: value for key, value in stored.items() if key in handed_hash
    }, "field by field, what Redis holds"
    job._status = None  # type: ignore[assignment]  # a field Redis cannot hold: the horse fetches the job itself
    assert job_hash(job) is None
