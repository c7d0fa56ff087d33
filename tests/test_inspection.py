"""show-queue, show-pending-jobs and show-failed-jobs: read models on a real Redis, through the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.utils import utcformat
from support import cli_env, make_bench, run_cli

import bench_jobs
from bench_jobs.cli import main
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.jobs import listings as inspection
from bench_jobs.jobs.enqueue import build_job

QUEUE_COMMANDS = ("show-queue", "show-pending-jobs", "show-failed-jobs", "purge-jobs", "requeue-failed-jobs")


def cli_json(bench: Bench, *args: str) -> Any:
    result = run_cli(*args, "--json", bench=bench)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_wide(bench: Bench, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with a terminal width that fits a table row on one line."""
    return run_cli(*args, bench=bench, env=cli_env(bench, COLUMNS="250"))


def run_worker(bench: Bench) -> None:
    result = run_cli("worker", "--burst", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def queues_by_name(bench: Bench) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in cli_json(bench, "show-queue")["queues"]}


def write_started_job(redis_client: redis.Redis, bench: Bench, site: str, worker_name: str) -> Job:
    """A job that a worker called `worker_name` took: status started, in the queue's started registry."""
    settings = load_site_settings(bench, site)
    rq_q, job = build_job(redis_client, settings, "sample_app.tasks.sleep", {"seconds": 60}, job_name="long nap")
    job.origin = rq_q.name
    job.enqueued_at = job.started_at = datetime.now(timezone.utc)
    job.worker_name = worker_name
    job.set_status("started", pipeline=None)  # type: ignore[arg-type]
    job.save()
    redis_client.zadd(rq_q.started_job_registry.key, {f"{job.id}:exec1": 4102444800})
    return job


@pytest.mark.parametrize("command", QUEUE_COMMANDS)
def test_each_queue_command_has_help_ending_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"Examples?:\n\n +bench-jobs ", text), text
    assert "--json" in text


def test_show_queue_counts_match_what_was_enqueued_run_and_failed(bench: Bench) -> None:
    use_bench(bench)
    for i in range(3):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"a{i}", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="b0", queue="short", site="beta.test")
    bench_jobs.enqueue("sample_app.tasks.fail", message="once", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.fail", message="retried", retry=1, site="beta.test")
    run_worker(bench)
    for i in range(2):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"l{i}", queue="long", site="alpha.test")

    rows = queues_by_name(bench)
    assert list(rows) == ["short", "default", "long"]
    assert {key: rows["default"][key] for key in ("queued", "started", "failed", "finished", "scheduled")} == {
        "queued": 0,
        "started": 0,
        "failed": 1,
        "finished": 3,
        "scheduled": 1,  # the failed job with a retry left waits for its retry
    }
    assert rows["short"]["finished"] == 1 and rows["short"]["failed"] == 0
    assert rows["long"]["queued"] == 2 and rows["long"]["finished"] == 0
    assert all(row["workers"] == 0 and row["deferred"] == 0 for row in rows.values())
    assert rows["default"]["rq_name"] == "testbench:default"


def test_show_queue_counts_only_live_workers_and_orphaned_jobs(bench: Bench, redis_client: redis.Redis) -> None:
    keys = Keys("testbench")
    for name in ("w-live", "w-dead"):
        redis_client.sadd("rq:workers:testbench:default", f"rq:worker:{name}")
    redis_client.set(keys.worker_alive("w-live"), "host:1", ex=15)
    write_started_job(redis_client, bench, "alpha.test", "w-live")
    write_started_job(redis_client, bench, "alpha.test", "w-dead")

    settings = load_bench_settings(bench)
    stats = {row.name: row for row in inspection.queue_stats(redis_client, settings, datetime.now(timezone.utc))}
    assert stats["default"].workers == ("w-live",)
    assert (stats["default"].started, stats["default"].orphaned) == (2, 1)
    assert stats["short"].workers == ()

    rows = queues_by_name(bench)
    assert rows["default"]["workers"] == 1 and rows["default"]["worker_names"] == ["w-live"]


def test_show_queue_does_not_count_expired_finished_entries(bench: Bench, redis_client: redis.Redis) -> None:
    now = datetime.now(timezone.utc)
    redis_client.zadd("rq:finished:testbench:default", {"gone": now.timestamp() - 5, "kept": now.timestamp() + 600})
    redis_client.zadd("rq:failed:testbench:default", {"forever": -1})
    stats = inspection.queue_stats(redis_client, load_bench_settings(bench), now)
    default = next(row for row in stats if row.name == "default")
    assert (default.finished, default.failed) == (1, 1)
    assert redis_client.zcard("rq:finished:testbench:default") == 2, "a read never cleans a registry"


def test_show_pending_jobs_lists_only_the_chosen_sites_jobs(bench: Bench) -> None:
    use_bench(bench)
    for i in range(3):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"a{i}", job_name=f"alpha {i}", site="alpha.test")
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"b{i}", job_name=f"beta {i}", site="beta.test")
    bench_jobs.enqueue("sample_app.tasks.daily", queue="long", site="alpha.test")

    jobs = cli_json(bench, "--site", "alpha.test", "show-pending-jobs")["jobs"]
    assert [job["job_name"] for job in jobs] == ["alpha 0", "alpha 1", "alpha 2", None]
    assert {job["site"] for job in jobs} == {"alpha.test"}
    assert [job["queue"] for job in jobs] == ["default"] * 3 + ["long"]
    assert [job["method"] for job in jobs] == ["sample_app.tasks.echo"] * 3 + ["sample_app.tasks.daily"]
    assert {job["status"] for job in jobs} == {"queued"}
    assert all(set(job) >= {"id", "site", "queue", "method", "job_name", "enqueued_at", "status"} for job in jobs)
    assert datetime.fromisoformat(jobs[0]["enqueued_at"]) <= datetime.now(timezone.utc)

    assert len(cli_json(bench, "--site", "alpha.test", "show-pending-jobs", "--limit", "2")["jobs"]) == 2
    long_only = cli_json(bench, "--site", "alpha.test", "show-pending-jobs", "--queue", "long")["jobs"]
    assert [job["method"] for job in long_only] == ["sample_app.tasks.daily"]
    everyone = cli_json(bench, "--site", "all", "show-pending-jobs")["jobs"]
    assert sorted(job["site"] for job in everyone) == ["alpha.test"] * 4 + ["beta.test"] * 3

    table = run_wide(bench, "--site", "beta.test", "show-pending-jobs")
    assert table.returncode == 0 and "beta 1" in table.stdout and "alpha" not in table.stdout


def test_a_started_job_whose_worker_is_gone_shows_as_orphaned(bench: Bench, redis_client: redis.Redis) -> None:
    redis_client.set(Keys("testbench").worker_alive("w-live"), "host:1", ex=15)
    running = write_started_job(redis_client, bench, "alpha.test", "w-live")
    orphan = write_started_job(redis_client, bench, "alpha.test", "w-dead")
    statuses = {
        job["id"]: job["status"] for job in cli_json(bench, "--site", "alpha.test", "show-pending-jobs")["jobs"]
    }
    assert statuses == {running.id: "started", orphan.id: "orphaned"}


def test_after_a_redis_restart_a_job_started_before_it_is_not_called_orphaned(restarted_bench: Bench) -> None:
    """Its worker's alive key expired with the outage; the worker may still run it (liveness.py)."""
    conn = connect(load_bench_settings(restarted_bench))
    before = write_started_job(conn, restarted_bench, "alpha.test", "w-quiet")
    conn.hset(before.key, "started_at", "2020-01-01T00:00:00.000000Z")
    orphan = write_started_job(conn, restarted_bench, "alpha.test", "w-dead")
    conn.hset(orphan.key, "started_at", utcformat(datetime.now(timezone.utc) + timedelta(seconds=5)))
    statuses = {
        job["id"]: job["status"]
        for job in cli_json(restarted_bench, "--site", "alpha.test", "show-pending-jobs")["jobs"]
    }
    assert statuses == {before.id: "started", orphan.id: "orphaned"}
    (default,) = [
        q for q in cli_json(restarted_bench, "--site", "alpha.test", "show-queue")["queues"] if q["name"] == "default"
    ]
    assert (default["started"], default["orphaned"]) == (2, 1)


def test_a_scheduled_retry_is_pending_with_its_due_time(bench: Bench, redis_client: redis.Redis) -> None:
    settings = load_site_settings(bench, "alpha.test")
    rq_q, job = build_job(redis_client, settings, "sample_app.tasks.echo", {"record_id": "r"}, job_name="retry me")
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=5)
    rq_q.schedule_job(job, due)
    (pending,) = inspection.pending_jobs(redis_client, load_bench_settings(bench), ["alpha.test"])
    assert (pending.id, pending.status, pending.scheduled_for) == (job.id, "scheduled", due)
    assert inspection.pending_jobs(redis_client, load_bench_settings(bench), ["beta.test"]) == []


def test_pending_jobs_page_through_a_big_queue_and_stop_at_the_limit(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    with bench_jobs.transaction():
        for i in range(1500):
            bench_jobs.enqueue("sample_app.tasks.echo", record_id=str(i), site="beta.test", enqueue_after_commit=True)
        for i in range(5):
            bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"a{i}", site="alpha.test", enqueue_after_commit=True)
    settings = load_bench_settings(bench)
    alpha = inspection.pending_jobs(redis_client, settings, ["alpha.test"], limit=None)
    assert len(alpha) == 5 and all(job.site == "alpha.test" for job in alpha)
    assert len(inspection.pending_jobs(redis_client, settings, ["beta.test"], limit=1200)) == 1200
    assert len(inspection.pending_jobs(redis_client, settings, ["beta.test"], limit=None)) == 1500


def test_show_failed_jobs_shows_the_error_and_the_full_traceback(bench: Bench) -> None:
    use_bench(bench)
    failed = bench_jobs.enqueue("sample_app.tasks.fail", message="kaboom", job_name="doomed", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.fail", message="not mine", site="beta.test")
    run_worker(bench)

    (job,) = cli_json(bench, "--site", "alpha.test", "show-failed-jobs")["jobs"]
    assert (job["id"], job["job_name"], job["status"]) == (failed.id, "doomed", "failed")
    assert job["error"] == "ValueError: kaboom"

    detail = cli_json(bench, "--site", "alpha.test", "show-failed-jobs", "--job-id", failed.id)["job"]
    assert detail["kwargs"] == {"message": "kaboom"}
    assert detail["traceback"].startswith("Traceback")
    assert "sample_app/tasks.py" in detail["traceback"] and "ValueError: kaboom" in detail["traceback"]

    human = run_cli("--site", "alpha.test", "show-failed-jobs", "--job-id", failed.id, bench=bench)
    assert human.returncode == 0 and "raise ValueError(message)" in human.stdout
    listing = run_wide(bench, "--site", "alpha.test", "show-failed-jobs")
    assert "ValueError: kaboom" in listing.stdout and "not mine" not in listing.stdout

    other = run_cli("--site", "beta.test", "show-failed-jobs", "--job-id", failed.id, bench=bench)
    assert other.returncode == 2 and other.stderr.startswith("Error: ")


def test_show_failed_jobs_lists_newest_first(bench: Bench, redis_client: redis.Redis) -> None:
    settings = load_site_settings(bench, "alpha.test")
    now = datetime.now(timezone.utc)
    for minutes, name in ((30, "older"), (1, "newest"), (10, "middle")):
        rq_q, job = build_job(redis_client, settings, "sample_app.tasks.fail", {}, job_name=name)
        job.origin = rq_q.name
        job.ended_at = now - timedelta(minutes=minutes)
        job.set_status("failed", pipeline=None)  # type: ignore[arg-type]
        job.save()
        redis_client.zadd(rq_q.failed_job_registry.key, {job.id: now.timestamp() + 3600 - minutes * 60})
    names = [job.job_name for job in inspection.failed_jobs(redis_client, load_bench_settings(bench), ["alpha.test"])]
    assert names == ["newest", "middle", "older"]


def test_queue_commands_exit_3_when_redis_does_not_answer(tmp_path: Any) -> None:
    bench = make_bench(tmp_path / "b", f"unix://{tmp_path}/missing.sock")
    result = run_cli("--site", "alpha.test", "show-pending-jobs", bench=bench)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr


def test_an_unknown_queue_is_a_usage_error(bench: Bench) -> None:
    result = run_cli("--site", "alpha.test", "show-pending-jobs", "--queue", "nope", bench=bench)
    assert result.returncode == 2 and "Known queues" in result.stderr


def test_help_of_queue_commands_does_not_import_redis(tmp_path: Any) -> None:
    code = (
        "import sys; from bench_jobs.cli import main\n"
        "main(['show-pending-jobs', '--help'])\n"
        "print(sorted(m for m in ('rq', 'redis', 'rich.table') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip().splitlines()[-1] == "[]"
