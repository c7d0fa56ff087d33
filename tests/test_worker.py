"""`bench-jobs worker` as real subprocesses: sites in context, allow-list, timeouts, retries, signals."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from support import kill_tree, point_at_redis, run_cli, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import JOB_FUNCTION, new_job_id
from bench_jobs.worker.recovery import recover_orphans

pytestmark = pytest.mark.slow


def calls(bench: Bench, site: str) -> list[dict[str, Any]]:
    path = bench.logs_dir / site / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def job_log(bench: Bench, site: str) -> list[dict[str, Any]]:
    path = bench.logs_dir / site / "jobs.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_sites_1000_jobs_run_in_their_site_with_hooks_once_each(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    for site in ("alpha.test", "beta.test"):
        with bench_jobs.transaction():
            for i in range(500):
                bench_jobs.enqueue(
                    "sample_app.tasks.echo", record_id=f"{site}-{i}", site=site, enqueue_after_commit=True
                )
    result = run_cli("worker", "--burst", bench=bench, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for site in ("alpha.test", "beta.test"):
        seen = calls(bench, site)
        echoes = [c for c in seen if c["event"] == "echo"]
        assert len(echoes) == 500
        assert all(c["site"] == site and c["record_id"].startswith(site) for c in echoes)
        assert sum(c["event"] == "before_job" for c in seen) == 500
        assert sum(c["event"] == "after_job" for c in seen) == 500
        log = job_log(bench, site)
        assert len(log) == 500 and all(r["status"] == "finished" for r in log)
    shown = json.loads(run_cli("show-queue", "--json", bench=bench).stdout)
    default = next(q for q in shown["queues"] if q["name"] == "default")
    logged = len(job_log(bench, "alpha.test")) + len(job_log(bench, "beta.test"))
    assert (default["finished"], default["queued"], default["started"], default["failed"]) == (logged, 0, 0, 0)
    assert redis_client.zcard("rq:finished:testbench:default") == 1000
    kept_s = redis_client.ttl(f"rq:job:{job_log(bench, 'alpha.test')[0]['job_id']}")
    assert 500 < kept_s <= 600, "finished jobs are kept for job_result_ttl (600 s by default)"
    assert redis_client.llen("rq:queue:testbench:default") == 0


def write_raw_job(redis_client: redis.Redis, func: str, kwargs: dict[str, Any], job_id: str) -> Job:
    """A job put into Redis by someone other than bench-jobs, in RQ's own format."""
    job = Job.create(
        func, kwargs=kwargs, id=job_id, connection=redis_client, serializer=JSONSerializer, origin="testbench:default"
    )
    job.save()
    redis_client.rpush("rq:queue:testbench:default", job.id)
    redis_client.sadd("rq:queues", "rq:queue:testbench:default")
    return job


@pytest.mark.parametrize("num_workers", ["1", "2"])
def test_foreign_payloads_fail_without_being_called(
    bench: Bench, redis_client: redis.Redis, tmp_path: Path, num_workers: str
) -> None:
    marker = tmp_path / "pwned"
    direct = write_raw_job(redis_client, "os.system", {"command": f"touch {marker}"}, "raw-os-system")
    wrapped = write_raw_job(
        redis_client,
        JOB_FUNCTION,
        {"site": "alpha.test", "method": "os.system", "kwargs": {"command": f"touch {marker}"}},
        new_job_id("testbench", "alpha.test"),
    )
    other_app = write_raw_job(
        redis_client,
        JOB_FUNCTION,
        {"site": "alpha.test", "method": "other_app.tasks.only_for_beta", "kwargs": {}},
        new_job_id("testbench", "alpha.test"),
    )
    result = run_cli("worker", "--burst", "--num-workers", num_workers, bench=bench)
    assert result.returncode == 0
    assert not marker.exists()
    for job, needle in [
        (direct, "bench-jobs workers run only"),
        (wrapped, "not inside the apps of site alpha.test"),
        (other_app, "not inside the apps of site alpha.test"),
    ]:
        job.refresh()
        assert job.get_status() == "failed"
        assert needle in (job.latest_result().exc_string or "")


def test_a_job_over_its_timeout_is_killed_and_the_worker_goes_on(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    slow = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=30, timeout=1, site="alpha.test")
    after = bench_jobs.enqueue("sample_app.tasks.echo", record_id="after", site="alpha.test")
    started = time.monotonic()
    result = run_cli("worker", "--burst", bench=bench, timeout=60)
    assert result.returncode == 0
    assert time.monotonic() - started < 20
    slow.refresh()
    assert slow.get_status() == "failed"
    assert "JobTimeoutException" in (slow.latest_result().exc_string or "")
    assert 7 * 24 * 3600 - 600 < redis_client.ttl(f"rq:job:{slow.id}") <= 7 * 24 * 3600, "kept for job_failure_ttl"
    after.refresh()
    assert after.get_status() == "finished"


def set_retry_intervals(bench: Bench, intervals: str) -> None:
    common = bench.common_config_path
    common.write_text(
        common.read_text().replace("scheduler_tick_interval", f"retry_intervals = {intervals}\nscheduler_tick_interval")
    )


def test_retry_two_runs_three_times_then_fails(bench: Bench, redis_client: redis.Redis, workers: Any) -> None:
    set_retry_intervals(bench, "[1, 2]")
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.fail", message="always", retry=2, site="alpha.test")
    process = workers()
    wait_for(lambda: job.get_status(refresh=True) == "failed", 60, "the job to end failed")
    assert sum(c["event"] == "fail" for c in calls(bench, "alpha.test")) == 3
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_sigterm_during_a_job_lets_it_finish_and_exits_0(bench: Bench, redis_client: redis.Redis, workers: Any) -> None:
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=2, site="alpha.test")
    queued_after = bench_jobs.enqueue("sample_app.tasks.echo", record_id="later", site="alpha.test")
    process = workers("--queue", "default")
    wait_for(lambda: any(c["event"] == "sleep_start" for c in calls(bench, "alpha.test")), 30, "the job to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert job.get_status(refresh=True) == "finished"
    assert any(c["event"] == "sleep_end" for c in calls(bench, "alpha.test"))
    assert queued_after.get_status(refresh=True) == "queued", "nothing new is taken after SIGTERM"


def test_sigkill_of_the_whole_worker_leaves_the_job_recoverable(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    set_retry_intervals(bench, "[0]")
    use_bench(bench)
    retried = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=1, retry=1, site="alpha.test")
    process = workers("--queue", "default")
    wait_for(lambda: any(c["event"] == "sleep_start" for c in calls(bench, "alpha.test")), 30, "the job to start")
    kill_tree(process)
    assert retried.get_status(refresh=True) == "started"
    result = run_cli("worker", "--burst", "--queue", "default", bench=bench, timeout=60)
    assert result.returncode == 0
    assert retried.get_status(refresh=True) == "finished", "a retry was left, so the orphan ran again"
    assert sum(c["event"] == "sleep_end" for c in calls(bench, "alpha.test")) == 1


def test_an_orphan_without_retries_ends_failed_and_visible(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=30, site="alpha.test")
    process = workers("--queue", "default")
    wait_for(lambda: job.get_status(refresh=True) == "started", 30, "the job to start")
    kill_tree(process)
    from bench_jobs.core.connection import connect
    from bench_jobs.core.keys import Keys
    from bench_jobs.jobs.queues import rq_queue

    settings = bench_jobs.core.context.load_site_settings(bench, "alpha.test").bench
    queue = rq_queue(connect(settings), settings, "default")
    assert recover_orphans(connect(settings), queue, Keys("testbench")) == 1
    assert job.get_status(refresh=True) == "failed"
    assert redis_client.zscore("rq:failed:testbench:default", job.id) is not None
    assert 7 * 24 * 3600 - 600 < redis_client.ttl(f"rq:job:{job.id}") <= 7 * 24 * 3600


def test_unknown_queue_for_worker_exits_2(bench: Bench) -> None:
    result = run_cli("worker", "--queue", "nope", "--burst", bench=bench)
    assert result.returncode == 2
    assert "Unknown queue(s): nope" in result.stderr and "Traceback" not in result.stderr


def test_worker_with_redis_down_exits_3(bench: Bench) -> None:
    point_at_redis(bench, "redis://127.0.0.1:1")
    result = run_cli("worker", "--burst", bench=bench)
    assert result.returncode == 3
    assert result.stderr.startswith("Error: Redis at redis://127.0.0.1:1 does not answer")


def test_num_workers_runs_jobs_in_several_processes(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    for _ in range(6):
        bench_jobs.enqueue("sample_app.tasks.sleep", seconds=0.5, site="beta.test", queue="short")
    result = run_cli("worker", "--burst", "--num-workers", "2", "--queue", "short", bench=bench, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    log = job_log(bench, "beta.test")
    assert len(log) == 6 and all(r["status"] == "finished" for r in log)


def test_callbacks_run_in_the_worker_with_frappes_arguments_and_only_from_the_sites_apps(
    bench: Bench, redis_client: redis.Redis, tmp_path: Path
) -> None:
    use_bench(bench)
    with bench_jobs.site_context("alpha.test"):
        ok = bench_jobs.enqueue(
            "sample_app.tasks.echo",
            record_id="ok",
            event="invoice_sync",
            on_success="sample_app.callbacks.succeeded",
            on_failure="sample_app.callbacks.failed",
        )
        raised = bench_jobs.enqueue(
            "sample_app.tasks.fail",
            message="boom",
            on_success="sample_app.callbacks.succeeded",
            on_failure="sample_app.callbacks.failed",
        )
        broken = bench_jobs.enqueue(
            "sample_app.tasks.echo",
            record_id="broken",
            on_success="sample_app.callbacks.broken_success",
            on_failure="sample_app.callbacks.failed",
        )
    forged = [
        write_raw_job(
            redis_client,
            JOB_FUNCTION,
            {"site": "alpha.test", "method": "sample_app.tasks.echo", "kwargs": {"record_id": "forged"}, **callback},
            new_job_id("testbench", "alpha.test"),
        )
        for callback in ({"on_success": "sample_app.callbacks.system"}, {"on_failure": "os.system"})
    ]
    marker = tmp_path / "rq-callback-called"
    rq_field = write_raw_job(
        redis_client,
        JOB_FUNCTION,
        {"site": "alpha.test", "method": "sample_app.tasks.echo", "kwargs": {"record_id": "x", "marker": str(marker)}},
        new_job_id("testbench", "alpha.test"),
    )
    # RQ's own callback field, as a forged hash would set it: a bench-jobs worker never calls it.
    redis_client.hset(rq_field.key, "success_callback_name", "sample_app.callbacks.touch_marker")
    result = run_cli("worker", "--burst", bench=bench)
    assert result.returncode == 0, result.stdout
    seen = calls(bench, "alpha.test")
    traced = ("on_success", "on_failure", "broken_success")
    callbacks = [(c["event"], c["job_id"]) for c in seen if c["event"] in traced]
    assert callbacks == [
        ("on_success", ok.id),
        ("on_failure", raised.id),
        ("broken_success", broken.id),
        ("on_failure", broken.id),
    ]
    on_success, on_failure = (next(c for c in seen if c["event"] == name) for name in ("on_success", "on_failure"))
    assert on_success["result"] == {"record_id": "ok", "site": "alpha.test", "extra": {}}
    assert on_success["connection"] == on_failure["connection"] == "Redis"
    assert on_failure["error"] == "ValueError: boom" and on_failure["traceback"] is True
    assert [c["error"] for c in seen if c["event"] == "on_failure"][1] == "RuntimeError: on_success broke"
    for job, status in [(ok, "finished"), (raised, "failed"), (broken, "failed"), (rq_field, "finished")]:
        job.refresh()
        assert job.get_status() == status
    for job in forged:
        job.refresh()
        assert job.get_status() == "failed"
        reason = job.latest_result().exc_string or ""
        assert "callback: it is" in reason and "apps of site alpha.test" in reason, reason
    assert not any(c.get("record_id") == "forged" for c in seen), "a refused job runs nothing"
    assert not marker.exists()
    logged = {r["job_id"]: r for r in job_log(bench, "alpha.test")}
    assert logged[ok.id]["event"] == "invoice_sync"
    assert redis_client.llen("bench_jobs:testbench:sched:history:alpha.test") == 0, "an enqueue's event is not a fire"


@pytest.mark.parametrize("num_workers", ["1", "2"])
def test_an_idle_worker_stops_within_3_s_of_sigterm(
    bench: Bench, redis_client: redis.Redis, workers: Any, num_workers: str
) -> None:
    """redis-py 8.2 joins RQ's command listener on stop, which waited up to 60 s for a message."""
    process = workers("--num-workers", num_workers)
    wait_for(lambda: len(redis_client.smembers("rq:workers")) >= int(num_workers), 30, "the workers to register")
    time.sleep(1.0)  # idle: blocked on its queues, its listener waiting for a command
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert time.monotonic() - began <= 3.0
