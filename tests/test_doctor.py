"""doctor: a healthy bench passes every check; each fault fails exactly its own check (DESIGN 6)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import redis
from support import kill_tree, point_at_redis, run_cli, start_cli, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.scheduler.leader import Heartbeat, write_heartbeat


def beat(redis_client: redis.Redis, age_s: float = 0) -> None:
    at = datetime.now(timezone.utc) - timedelta(seconds=age_s)
    write_heartbeat(
        redis_client,
        Keys("testbench"),
        Heartbeat(at=at.isoformat(), host="h", pid=1, leader=True, tick_interval_s=60, tick_lag_s=0.01),
    )


def doctor(bench: Bench, *args: str) -> tuple[int, dict]:
    result = run_cli("--site", "all", "doctor", "--json", *args, bench=bench)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def failing(document: dict) -> set[str]:
    return {check["name"] for check in document["checks"] if not check["ok"]}


def test_a_healthy_bench_passes_every_check(bench: Bench, redis_client: redis.Redis) -> None:
    beat(redis_client)
    code, document = doctor(bench)
    assert code == 0, document
    assert document["ok"] is True
    names = {check["name"] for check in document["checks"]}
    assert {
        "redis",
        "redis-maxmemory-policy",
        "scheduler",
        "workers:default",
        "stuck-jobs",
        "failed-jobs:default",
        "hooks:alpha.test",
        "timezone:beta.test",
        "scheduler-enabled:beta.test",
        "config-permissions",
    } <= names
    assert all(set(check) >= {"name", "ok", "detail", "hint"} for check in document["checks"])


def _queued_job_without_worker(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test")


def _stale_heartbeat(bench: Bench, redis_client: redis.Redis) -> None:
    beat(redis_client, age_s=600)


def _disabled_site(bench: Bench, redis_client: redis.Redis) -> None:
    path = bench.site_config_path("beta.test")
    path.write_text(path.read_text().replace("scheduler_enabled = true", "scheduler_enabled = false"))


def _broken_hook(bench: Bench, redis_client: redis.Redis) -> None:
    hooks = bench.apps_dir / "other_app" / "hooks.py"
    hooks.write_text('scheduler_events = {"hourly": ["other_app.tasks.gone"]}\n')


def _job_past_its_timeout(bench: Bench, redis_client: redis.Redis) -> None:
    started = (datetime.now(timezone.utc) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    redis_client.hset(
        "rq:job:testbench-alpha_2etest--stuck",
        mapping={"status": "started", "started_at": started, "timeout": "60", "worker_name": "w"},
    )
    redis_client.zadd("rq:wip:testbench:default", {"testbench-alpha_2etest--stuck:exec1": 9e12})


def _lru_policy(bench: Bench, redis_client: redis.Redis) -> None:
    redis_client.config_set("maxmemory-policy", "allkeys-lru")


def _world_readable_password(bench: Bench, redis_client: redis.Redis) -> None:
    path = bench.site_config_path("alpha.test")
    path.write_text(path.read_text() + 'db_password = "hunter2"\n')
    os.chmod(path, 0o644)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (_queued_job_without_worker, {"workers:default"}),
        (_stale_heartbeat, {"scheduler"}),
        (_disabled_site, {"scheduler-enabled:beta.test"}),
        (_broken_hook, {"hooks:beta.test"}),
        (_job_past_its_timeout, {"stuck-jobs"}),
        (_lru_policy, {"redis-maxmemory-policy"}),
        (_world_readable_password, {"config-permissions"}),
    ],
)
def test_each_fault_fails_exactly_its_check_with_a_hint(
    bench: Bench, redis_client: redis.Redis, fault: Callable[[Bench, redis.Redis], None], expected: set[str]
) -> None:
    beat(redis_client)
    try:
        fault(bench, redis_client)
        code, document = doctor(bench)
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    assert code == 1
    assert document["ok"] is False
    assert failing(document) == expected
    assert all(check["hint"] for check in document["checks"] if not check["ok"])


def test_the_password_itself_is_never_printed(bench: Bench, redis_client: redis.Redis) -> None:
    beat(redis_client)
    _world_readable_password(bench, redis_client)
    result = run_cli("--site", "all", "doctor", bench=bench)
    assert result.returncode == 1
    assert "hunter2" not in result.stdout + result.stderr
    assert "✗ config-permissions" in result.stdout and "chmod 640" in result.stdout


@pytest.mark.slow
def test_a_bench_with_a_real_scheduler_and_worker_is_healthy(bench: Bench, redis_client: redis.Redis) -> None:
    common = bench.common_config_path
    common.write_text(common.read_text().replace("scheduler_tick_interval = 60", "scheduler_tick_interval = 1"))
    use_bench(bench)
    processes = [start_cli(bench, "schedule"), start_cli(bench, "worker")]
    try:
        wait_for(lambda: redis_client.get("bench_jobs:testbench:sched:heartbeat"), 30, "the scheduler's heartbeat")
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="while-healthy", site="alpha.test")
        wait_for(lambda: doctor(bench)[0] == 0, 30, "doctor to pass with the queue drained")
        code, document = doctor(bench)
        assert code == 0 and document["ok"] is True
        assert failing(document) == set()
        scheduler = next(check for check in document["checks"] if check["name"] == "scheduler")
        assert "1 scheduler process(es) alive" in scheduler["detail"]
    finally:
        for process in processes:
            kill_tree(process)


def test_redis_down_exits_3_with_a_failed_redis_check(bench: Bench) -> None:
    """With --json, stdout holds the report even then: ok false, a failed `redis` check, the checks that need
    no Redis; stderr says the error in one line; the password shows nowhere."""
    point_at_redis(bench, "redis://:pw@127.0.0.1:1")
    result = run_cli("--site", "all", "doctor", "--json", bench=bench)
    assert result.returncode == 3
    document = json.loads(result.stdout)
    assert document["ok"] is False
    redis_check = next(check for check in document["checks"] if check["name"] == "redis")
    assert redis_check["ok"] is False and "does not answer" in redis_check["detail"]
    assert redis_check["detail"].startswith("Redis at redis://:***@127.0.0.1:1")
    assert {"hooks:alpha.test", "timezone:beta.test", "config-permissions"} <= {c["name"] for c in document["checks"]}
    assert result.stderr.startswith("Error: Redis at redis://:***@127.0.0.1:1 does not answer")
    assert "pw@" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    text = run_cli("doctor", bench=bench)
    assert text.returncode == 3 and "✗ redis: Redis at redis://:***@127.0.0.1:1" in text.stdout


def _failed_job(bench: Bench, redis_client: redis.Redis) -> None:
    """A failed job of alpha.test, kept in the failed registry as a worker leaves it."""
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test")
    redis_client.lrem("rq:queue:testbench:default", 0, job.id)
    job.set_status("failed", pipeline=None)  # type: ignore[arg-type]
    redis_client.zadd("rq:failed:testbench:default", {job.id: datetime.now(timezone.utc).timestamp() + 3600})


def test_a_kept_failed_job_is_a_warning_by_default_and_doctor_passes(bench: Bench, redis_client: redis.Redis) -> None:
    beat(redis_client)
    _failed_job(bench, redis_client)
    code, document = doctor(bench)
    (check,) = [c for c in document["checks"] if c["name"] == "failed-jobs:default"]
    assert code == 0 and document["ok"] is True, document
    assert check["level"] == "warning" and "alpha.test: 1" in check["detail"] and check["hint"]


def test_doctor_failed_jobs_error_makes_a_failed_job_fail_doctor(bench: Bench, redis_client: redis.Redis) -> None:
    beat(redis_client)
    _failed_job(bench, redis_client)
    common = bench.common_config_path
    common.write_text('doctor_failed_jobs = "error"\n' + common.read_text())
    code, document = doctor(bench)
    assert code == 1 and failing(document) == {"failed-jobs:default"}


def test_a_bad_doctor_failed_jobs_value_is_a_config_error_listing_the_allowed_ones(bench: Bench) -> None:
    common = bench.common_config_path
    common.write_text('doctor_failed_jobs = "page"\n' + common.read_text())
    result = run_cli("--site", "all", "doctor", bench=bench)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "doctor_failed_jobs" in result.stderr and '"warning" or "error"' in result.stderr
