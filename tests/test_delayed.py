"""Delayed jobs: enqueue_at and enqueue_in against a real Redis, listed, purged and run by a real worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from support import kill_tree, run_cli, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.errors import JobError
from bench_jobs.jobs.delayed import due_after, due_epoch_s
from bench_jobs.jobs.queues import rq_queue

QUEUE = "rq:queue:testbench:default"
SCHEDULED = "rq:scheduled:testbench:default"
NOW = datetime(2030, 3, 30, 23, 59, 58, 250000, tzinfo=timezone.utc)


@pytest.fixture
def alpha(bench: Bench) -> Iterator[Bench]:
    use_bench(bench)
    with bench_jobs.site_context("alpha.test"):
        yield bench


def cli_json(bench: Bench, *args: str) -> Any:
    result = run_cli(*args, "--json", bench=bench)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def calls(bench: Bench, site: str = "alpha.test") -> list[dict[str, Any]]:
    path = bench.logs_dir / site / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize(
    ("delay", "expected"),
    [
        (2, NOW + timedelta(seconds=2)),
        (0.5, NOW + timedelta(milliseconds=500)),
        (timedelta(hours=1), NOW + timedelta(hours=1)),
        (0, NOW),
        (-3, NOW - timedelta(seconds=3)),
    ],
)
def test_due_after_adds_seconds_or_a_timedelta_to_now(delay: float | timedelta, expected: datetime) -> None:
    assert due_after(delay, NOW) == expected


@pytest.mark.parametrize("delay", [True, "5", None, float("nan"), float("inf")])
def test_due_after_refuses_what_is_not_a_delay(delay: Any) -> None:
    with pytest.raises(JobError, match="delay must be seconds"):
        due_after(delay, NOW)


def test_due_epoch_s_keeps_the_fraction_and_the_zone() -> None:
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    assert due_epoch_s(berlin) == due_epoch_s(NOW) == NOW.timestamp()
    assert due_epoch_s(NOW) % 1 == 0.25


def test_a_naive_datetime_is_refused_and_nothing_is_written(alpha: Bench, redis_client: redis.Redis) -> None:
    with pytest.raises(JobError, match="no time zone") as caught:
        bench_jobs.enqueue_at(datetime(2030, 1, 1, 9, 0), "sample_app.tasks.echo", record_id="N")
    assert "aware datetime" in (caught.value.hint or "")
    with pytest.raises(JobError, match="must be a datetime"):
        bench_jobs.enqueue_at("2030-01-01T09:00:00Z", "sample_app.tasks.echo", record_id="N")  # type: ignore[arg-type]
    assert redis_client.keys("rq:job:*") == []


def test_enqueue_in_schedules_the_job_with_its_exact_due_time(alpha: Bench, redis_client: redis.Redis) -> None:
    before = time.time()
    job = bench_jobs.enqueue_in(2, "sample_app.tasks.echo", record_id="D", job_name="later", queue="default")
    assert job.get_status(refresh=True) == "scheduled"
    assert redis_client.llen(QUEUE) == 0
    score = redis_client.zscore(SCHEDULED, job.id)
    assert score is not None and before + 2 <= score <= time.time() + 2
    assert score % 1 != 0 or before % 1 == 0, "the due time keeps its fraction of a second"
    assert redis_client.hget(job.key, "enqueued_at") is None
    assert redis_client.llen("bench_jobs:testbench:wake:default") == 1, "an idle worker is woken to wait for it"


def test_enqueue_at_an_aware_datetime_in_any_zone_takes_every_enqueue_keyword(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    when = datetime.now(ZoneInfo("Asia/Kolkata")) + timedelta(minutes=10)
    job = bench_jobs.enqueue_at(
        when, "sample_app.tasks.echo", queue="long", timeout=7, job_name="n", retry=2, site="beta.test", n=1
    )
    assert redis_client.zscore("rq:scheduled:testbench:long", job.id) == when.timestamp()
    settings = load_bench_settings(alpha)
    fetched = rq_queue(connect(settings), settings, "long").fetch_job(job.id)
    assert fetched is not None and fetched.timeout == 7 and fetched.retries_left == 2
    assert fetched.kwargs["site"] == "beta.test" and fetched.kwargs["kwargs"] == {"n": 1}
    assert fetched.get_status() == "scheduled"


def test_a_time_already_past_queues_the_job_at_once(alpha: Bench, redis_client: redis.Redis) -> None:
    past = bench_jobs.enqueue_at(
        datetime.now(timezone.utc) - timedelta(seconds=5), "sample_app.tasks.echo", record_id="P"
    )
    zero = bench_jobs.enqueue_in(0, "sample_app.tasks.echo", record_id="Z")
    assert [job.get_status(refresh=True) for job in (past, zero)] == ["queued", "queued"]
    assert redis_client.lrange(QUEUE, 0, -1) == [past.id.encode(), zero.id.encode()]
    assert redis_client.zcard(SCHEDULED) == 0


def test_a_delayed_job_cannot_also_run_now(alpha: Bench, redis_client: redis.Redis) -> None:
    with pytest.raises(JobError, match="cannot also run now"):
        bench_jobs.enqueue_in(5, "sample_app.tasks.echo", record_id="X", now=True)
    assert redis_client.keys("rq:job:*") == []


def test_deduplicate_treats_a_scheduled_job_as_pending(alpha: Bench, redis_client: redis.Redis) -> None:
    first = bench_jobs.enqueue_in(60, "sample_app.tasks.echo", record_id="A", job_id="sync", deduplicate=True)
    assert first is not None and first.get_status(refresh=True) == "scheduled"
    assert bench_jobs.enqueue_in(60, "sample_app.tasks.echo", record_id="B", job_id="sync", deduplicate=True) is None
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="C", job_id="sync", deduplicate=True) is None
    assert bench_jobs.is_job_enqueued("sync")
    with pytest.raises(JobError, match="already queued"):
        bench_jobs.enqueue_in(60, "sample_app.tasks.echo", record_id="D", job_id="sync")
    assert redis_client.zrange(SCHEDULED, 0, -1) == [first.id.encode()]
    assert redis_client.llen(QUEUE) == 0
    assert redis_client.hget(first.key, "status") == b"scheduled"


def test_deduplicated_scheduling_replaces_a_finished_twin_and_keeps_the_due_time(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    done = bench_jobs.enqueue("sample_app.tasks.echo", record_id="old", job_id="nightly", deduplicate=True)
    redis_client.lrem(QUEUE, 0, done.id)
    redis_client.hset(done.key, "status", "finished")
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    again = bench_jobs.enqueue_at(when, "sample_app.tasks.echo", record_id="new", job_id="nightly", deduplicate=True)
    assert again is not None and again.id == done.id
    assert redis_client.zscore(SCHEDULED, again.id) == when.timestamp()
    assert redis_client.hget(again.key, "status") == b"scheduled"
    assert redis_client.llen(QUEUE) == 0


def test_enqueue_after_commit_schedules_the_job_only_on_commit(alpha: Bench, redis_client: redis.Redis) -> None:
    with bench_jobs.transaction():
        held = bench_jobs.enqueue_in(30, "sample_app.tasks.echo", record_id="T", enqueue_after_commit=True)
        assert held is None
        assert redis_client.zcard(SCHEDULED) == 0 and redis_client.keys("rq:job:*") == []
    assert redis_client.zcard(SCHEDULED) == 1
    (job_id,) = redis_client.zrange(SCHEDULED, 0, -1)
    assert redis_client.hget(b"rq:job:" + job_id, "status") == b"scheduled"

    with pytest.raises(RuntimeError), bench_jobs.transaction():
        bench_jobs.enqueue_in(30, "sample_app.tasks.echo", record_id="R", enqueue_after_commit=True)
        raise RuntimeError("rolled back")
    assert redis_client.zcard(SCHEDULED) == 1


def test_show_queue_and_show_pending_jobs_list_it_as_scheduled_with_its_due_time(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    when = datetime.now(timezone.utc) + timedelta(minutes=5)
    job = bench_jobs.enqueue_at(when, "sample_app.tasks.echo", record_id="S", job_name="in five")
    rows = {row["name"]: row for row in cli_json(alpha, "show-queue")["queues"]}
    assert (rows["default"]["scheduled"], rows["default"]["queued"]) == (1, 0)
    (pending,) = cli_json(alpha, "--site", "alpha.test", "show-pending-jobs")["jobs"]
    assert (pending["id"], pending["status"]) == (job.id, "scheduled")
    assert abs(datetime.fromisoformat(pending["scheduled_for"]).timestamp() - when.timestamp()) < 0.001
    human = run_cli("--site", "alpha.test", "show-pending-jobs", bench=alpha)
    assert "scheduled, due in 4m" in human.stdout, human.stdout


def test_metrics_count_it_as_scheduled(alpha: Bench, redis_client: redis.Redis) -> None:
    pytest.importorskip("prometheus_client")
    from bench_jobs.web.metrics import render_metrics

    bench_jobs.enqueue_in(300, "sample_app.tasks.echo", record_id="M")
    text = render_metrics(alpha).decode()
    assert 'bench_jobs_jobs{queue="default",site="alpha.test",state="scheduled"} 1.0' in text


def test_purge_jobs_removes_a_scheduled_job(alpha: Bench, redis_client: redis.Redis) -> None:
    job = bench_jobs.enqueue_in(300, "sample_app.tasks.echo", record_id="G")
    other = bench_jobs.enqueue_in(300, "sample_app.tasks.echo", record_id="H", site="beta.test")
    assert cli_json(alpha, "--site", "alpha.test", "purge-jobs", "--yes") == {"purged": 1}
    assert not redis_client.exists(job.key)
    assert redis_client.zrange(SCHEDULED, 0, -1) == [other.id.encode()]


def test_two_concurrent_movers_queue_each_due_job_once(alpha: Bench, redis_client: redis.Redis) -> None:
    from bench_jobs.worker.due import move_due_jobs

    jobs = [bench_jobs.enqueue_in(60, "sample_app.tasks.echo", record_id=str(i)) for i in range(600)]
    later = datetime.now(timezone.utc) + timedelta(seconds=120)
    settings = load_bench_settings(alpha)
    moved: list[int] = []
    start = threading.Barrier(2)

    def mover() -> None:
        conn = redis.Redis.from_url(settings.redis_url)  # a connection of its own per mover
        queue = rq_queue(conn, settings, "default")
        start.wait()
        total = 0
        while n := move_due_jobs(conn, [queue], now=later):
            total += n
        moved.append(total)
        conn.close()

    threads = [threading.Thread(target=mover) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(moved) == 600
    queued = [job_id.decode() for job_id in redis_client.lrange(QUEUE, 0, -1)]
    assert sorted(queued) == sorted(job.id for job in jobs), "each id is queued exactly once"
    assert redis_client.zcard(SCHEDULED) == 0
    assert {redis_client.hget(job.key, "status") for job in jobs} == {b"queued"}


def test_a_due_at_front_job_goes_to_the_head_of_its_queue(alpha: Bench, redis_client: redis.Redis) -> None:
    from bench_jobs.worker.due import move_due_jobs

    waiting = bench_jobs.enqueue("sample_app.tasks.echo", record_id="first")
    urgent = bench_jobs.enqueue_in(60, "sample_app.tasks.echo", record_id="urgent", at_front=True)
    settings = load_bench_settings(alpha)
    conn = connect(settings)
    move_due_jobs(conn, [rq_queue(conn, settings, "default")], now=datetime.now(timezone.utc) + timedelta(minutes=2))
    assert redis_client.lrange(QUEUE, 0, -1) == [urgent.id.encode(), waiting.id.encode()]


@pytest.mark.slow
def test_a_worker_runs_a_delayed_job_within_a_second_of_its_time(
    alpha: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    process = workers("--queue", "default")
    wait_for(lambda: redis_client.keys("rq:worker:*"), 30, "the worker to start")
    time.sleep(1)  # idle: blocked on its wake list
    job = bench_jobs.enqueue_in(2, "sample_app.tasks.echo", record_id="timed")
    due_s = redis_client.zscore(SCHEDULED, job.id)
    assert due_s is not None
    time.sleep(max(0.0, due_s - 0.4 - time.time()))
    assert job.get_status(refresh=True) == "scheduled" and calls(alpha) == [], "not run before its time"
    wait_for(lambda: job.get_status(refresh=True) == "finished", 30, "the delayed job to run")
    job.refresh()
    assert job.started_at is not None
    lateness_s = job.started_at.replace(tzinfo=timezone.utc).timestamp() - due_s
    print(f"delayed job started {lateness_s:.3f} s after its due time")
    assert 0 <= lateness_s < 1.0
    assert [c["record_id"] for c in calls(alpha) if c["event"] == "echo"] == ["timed"]
    assert process.poll() is None


def test_the_lost_reply_check_finds_a_scheduled_job_only_in_its_registry(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    from bench_jobs.jobs import lost_reply
    from bench_jobs.jobs.push import PendingJob

    landed = bench_jobs.enqueue_in(60, "sample_app.tasks.echo", record_id="L")
    settings = load_bench_settings(alpha)
    queue = rq_queue(connect(settings), settings, "default")
    assert lost_reply._landed(connect(settings), PendingJob(queue, landed, False, False), sure=True)

    half = bench_jobs.enqueue_in(60, "sample_app.tasks.echo", record_id="H")
    redis_client.zrem(SCHEDULED, half.id)  # as if the batch was cut after the hash, before the registry
    assert lost_reply._landed(connect(settings), PendingJob(queue, half, False, False), sure=True) is False
    assert not redis_client.exists(half.key), "the half-written hash is deleted: the job did not land"


def test_the_dashboard_shows_a_delayed_job_as_scheduled_with_its_due_time_and_deletes_it(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    pytest.importorskip("starlette")
    from test_dashboard import client_of, csrf_of

    job = bench_jobs.enqueue_in(600, "sample_app.tasks.echo", record_id="W")
    with client_of(alpha) as client:
        overview = client.get("/").text
        assert 'class="n scheduled">1<' in overview
        listing = client.get("/sites/alpha.test").text
        assert job.id in listing
        page = client.get(f"/sites/alpha.test/jobs/{job.id}")
        assert 'id="status">scheduled<' in page.text and "<th>due</th>" in page.text
        done = client.post(f"/sites/alpha.test/jobs/{job.id}/delete", data={"csrf": csrf_of(page.text)})
        assert "Deleted 1 job" in done.text
    assert not redis_client.exists(job.key) and redis_client.zcard(SCHEDULED) == 0


@pytest.mark.slow
def test_a_worker_sigkilled_while_waiting_for_a_delayed_job_leaves_it_to_the_next_worker(
    alpha: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    first = workers("--queue", "default")
    wait_for(lambda: redis_client.keys("rq:worker:*"), 30, "the worker to start")
    job = bench_jobs.enqueue_in(1.5, "sample_app.tasks.echo", record_id="survivor")
    time.sleep(0.3)  # the woken worker now waits for the job's time
    kill_tree(first)
    time.sleep(1.5)  # the job falls due with no worker alive
    assert job.get_status(refresh=True) == "scheduled"
    workers("--queue", "default")
    wait_for(lambda: job.get_status(refresh=True) == "finished", 30, "the next worker to run it")
    assert [c["record_id"] for c in calls(alpha) if c["event"] == "echo"] == ["survivor"]
    assert redis_client.zcard(SCHEDULED) == 0
