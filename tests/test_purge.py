"""purge-jobs and requeue-failed-jobs: only the chosen site's jobs change, on a real Redis, via the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import redis
from rq.job import Job
from support import cli_env, run_cli

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.context import use_bench
from bench_jobs.jobs import purge as purging
from bench_jobs.jobs.enqueue import build_job
from bench_jobs.jobs.push import PendingJob, send

DEFAULT_QUEUE = "rq:queue:testbench:default"


def cli_json(bench: Bench, *args: str) -> Any:
    result = run_cli(*args, "--json", bench=bench)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_worker(bench: Bench) -> None:
    result = run_cli("worker", "--burst", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def run_without_terminal(bench: Bench, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with stdin that is not a terminal (as under cron or CI)."""
    return subprocess.run(
        [sys.executable, "-m", "bench_jobs", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(bench),
    )


def enqueue_echoes(site: str, count: int, queue: str = "default") -> list[str]:
    return [
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"{site}-{i}", queue=queue, site=site).id
        for i in range(count)
    ]


def send_event_jobs(redis_client: redis.Redis, bench: Bench, site: str, events: list[str | None]) -> list[str]:
    """Jobs as the scheduler sends them: the payload names the event that fired them."""
    settings = load_site_settings(bench, site)
    pending = []
    for event in events:
        rq_q, job = build_job(redis_client, settings, f"sample_app.tasks.{event or 'echo'}", {}, event=event)
        pending.append(PendingJob(rq_q, job, at_front=False, deduplicate=False))
    return [job.id for job in send(redis_client, pending) if job is not None]


def queued_ids(redis_client: redis.Redis, key: str = DEFAULT_QUEUE) -> list[str]:
    return [item.decode() for item in redis_client.lrange(key, 0, -1)]


def job_exists(redis_client: redis.Redis, job_id: str) -> bool:
    return bool(redis_client.exists(Job.key_for(job_id)))


def test_purge_jobs_deletes_only_the_chosen_sites_pending_jobs(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    alpha = enqueue_echoes("alpha.test", 2)
    beta = enqueue_echoes("beta.test", 3)
    alpha += enqueue_echoes("alpha.test", 2) + enqueue_echoes("alpha.test", 1, queue="long")

    assert cli_json(bench, "--site", "alpha.test", "purge-jobs", "--yes") == {"purged": 5}
    assert queued_ids(redis_client) == beta
    assert not any(job_exists(redis_client, job_id) for job_id in alpha)
    assert all(job_exists(redis_client, job_id) for job_id in beta)
    assert redis_client.llen("rq:queue:testbench:long") == 0
    assert redis_client.keys("rq:results:*") == []

    human = run_cli("--site", "alpha.test", "purge-jobs", "--yes", bench=bench)
    assert human.returncode == 0 and "Deleted 0 pending job(s) of alpha.test" in human.stdout


def test_dry_run_deletes_nothing_and_reports_the_count(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    enqueue_echoes("alpha.test", 3)
    enqueue_echoes("beta.test", 1)
    before = queued_ids(redis_client)
    document = cli_json(bench, "--site", "alpha.test", "purge-jobs", "--dry-run")
    assert document == {"purged": 0, "would_purge": 3}
    human = run_without_terminal(bench, "--site", "alpha.test", "purge-jobs", "--dry-run", "--queue", "default")
    assert human.returncode == 0 and "would delete 3 pending job(s) of alpha.test" in human.stdout
    assert queued_ids(redis_client) == before


def test_event_filter_removes_only_that_events_jobs(bench: Bench, redis_client: redis.Redis) -> None:
    daily = send_event_jobs(redis_client, bench, "alpha.test", ["daily", "hourly", "daily", None])
    beta_daily = send_event_jobs(redis_client, bench, "beta.test", ["daily"])
    assert cli_json(bench, "--site", "alpha.test", "purge-jobs", "--event", "daily", "--yes") == {"purged": 2}
    assert queued_ids(redis_client) == [daily[1], daily[3], *beta_daily]

    bad = run_cli("--site", "alpha.test", "purge-jobs", "--event", "fortnightly", "--yes", bench=bench)
    assert bad.returncode == 2 and "daily" in bad.stderr and "Traceback" not in bad.stderr


def test_failed_purges_the_sites_failed_jobs_and_leaves_pending_ones(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    alpha_failed = bench_jobs.enqueue("sample_app.tasks.fail", site="alpha.test").id
    beta_failed = bench_jobs.enqueue("sample_app.tasks.fail", site="beta.test").id
    run_worker(bench)
    pending = enqueue_echoes("alpha.test", 1)

    assert cli_json(bench, "--site", "alpha.test", "purge-jobs", "--failed", "--dry-run")["would_purge"] == 1
    assert cli_json(bench, "--site", "alpha.test", "purge-jobs", "--failed", "--yes") == {"purged": 1}
    failed_registry = [m.decode() for m in redis_client.zrange("rq:failed:testbench:default", 0, -1)]
    assert failed_registry == [beta_failed]
    assert not job_exists(redis_client, alpha_failed) and job_exists(redis_client, beta_failed)
    assert queued_ids(redis_client) == pending


def test_purge_and_requeue_refuse_without_yes_when_stdin_is_not_a_terminal(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    jobs = enqueue_echoes("alpha.test", 2)
    for command in ("purge-jobs", "requeue-failed-jobs"):
        redis_client.zadd("rq:failed:testbench:default", {"testbench-alpha_2etest--f": 4102444800})
        result = run_without_terminal(bench, "--site", "alpha.test", command)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("Error: ") and "--yes" in result.stderr
    assert queued_ids(redis_client) == jobs


def test_a_job_a_worker_took_after_planning_is_not_deleted(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    jobs = enqueue_echoes("alpha.test", 3)
    settings = load_bench_settings(bench)
    plan = purging.plan_purge(redis_client, settings, ["alpha.test"])
    assert plan.total == 3
    taken = redis_client.lpop(DEFAULT_QUEUE)
    assert taken is not None and taken.decode() == jobs[0]
    assert purging.purge(redis_client, plan) == 2
    assert job_exists(redis_client, jobs[0]) and queued_ids(redis_client) == []


def test_purging_a_big_mixed_queue_keeps_the_other_sites_jobs_in_order(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    with bench_jobs.transaction():
        for i in range(1200):
            site = "alpha.test" if i % 2 else "beta.test"
            bench_jobs.enqueue("sample_app.tasks.echo", record_id=str(i), site=site, enqueue_after_commit=True)
    before = queued_ids(redis_client)
    settings = load_bench_settings(bench)
    plan = purging.plan_purge(redis_client, settings, ["alpha.test"])
    assert plan.total == 600 and all(len(batch.job_ids) <= 1000 for batch in plan.batches)
    progress: list[int] = []
    assert purging.purge(redis_client, plan, progress.append) == 600
    assert sum(progress) == 600
    assert queued_ids(redis_client) == [job_id for job_id in before if job_id.startswith("testbench-beta_2etest-")]


def test_requeue_failed_jobs_puts_them_back_and_a_worker_records_them_again(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    failing = [bench_jobs.enqueue("sample_app.tasks.fail", message=f"m{i}", site="alpha.test").id for i in range(2)]
    beta_failing = bench_jobs.enqueue("sample_app.tasks.fail", site="beta.test").id
    run_worker(bench)

    result = run_cli("--site", "alpha.test", "requeue-failed-jobs", "--yes", bench=bench)
    assert result.returncode == 0, result.stderr
    assert "Requeued 2 failed job(s) of alpha.test" in result.stdout
    assert sorted(queued_ids(redis_client)) == sorted(failing)
    assert [m.decode() for m in redis_client.zrange("rq:failed:testbench:default", 0, -1)] == [beta_failing]

    run_worker(bench)
    failed = cli_json(bench, "--site", "alpha.test", "show-failed-jobs")["jobs"]
    assert sorted(job["id"] for job in failed) == sorted(failing)
    assert all(job["error"].startswith("ValueError: m") for job in failed)
    calls = (bench.logs_dir / "alpha.test" / "calls.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["event"] == "fail" for line in calls) == 4

    one = cli_json(bench, "--site", "alpha.test", "requeue-failed-jobs", "--job-id", failing[0], "--yes")
    assert one == {"requeued": 1} and queued_ids(redis_client) == [failing[0]]
    foreign = run_cli("--site", "alpha.test", "requeue-failed-jobs", "--job-id", beta_failing, "--yes", bench=bench)
    assert foreign.returncode == 2 and "beta.test" in foreign.stderr


def answer_on_a_terminal(bench: Bench, answer: str, *args: str) -> tuple[int, str]:
    """The CLI with stdin (and stderr) on a pseudo-terminal that answers the confirmation with `answer`."""
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench_jobs", *args],
            env=cli_env(bench),
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        os.close(follower)
        os.write(leader, answer.encode() + b"\n")
        stdout, _ = process.communicate(timeout=60)
        seen = b""
        try:
            while chunk := os.read(leader, 65536):
                seen += chunk
        except OSError:  # EIO once the terminal's last writer is gone
            pass
    finally:
        os.close(leader)
    return process.returncode, stdout + seen.decode(errors="replace")


def test_answering_no_aborts_purge_and_requeue_with_exit_1_and_says_nothing_changed(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    pending = enqueue_echoes("alpha.test", 2)
    for command, said in (
        ("purge-jobs", "Aborted: nothing purged."),
        ("requeue-failed-jobs", "Aborted: nothing requeued."),
    ):
        if command == "requeue-failed-jobs":
            job = Job.fetch(pending[0], connection=redis_client)
            redis_client.lrem(DEFAULT_QUEUE, 0, job.id)
            redis_client.zadd("rq:failed:testbench:default", {job.id: 9e9})
        code, output = answer_on_a_terminal(bench, "n", "--site", "alpha.test", command)
        assert code == 1, (command, output)
        assert said in output, (command, output)
    code, output = answer_on_a_terminal(bench, "n", "--site", "alpha.test", "purge-jobs", "--json")
    assert code == 1 and '"error": "Aborted: nothing purged."' in output, output
    assert all(job_exists(redis_client, job_id) for job_id in pending)
