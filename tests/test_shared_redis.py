"""Two benches on one Redis database, with the same site names (Frappe's multi-bench setups): every job id
and key is namespaced by bench_id, so neither bench's scheduler, enqueue, listings, purge or workers see or
touch the other's jobs."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from support import SITES, RedisServer, make_bench, run_cli

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import bench_id_of, decode_part, owner_of_job_id, site_job_prefix
from bench_jobs.scheduler.tick import Scheduler, TickResult

# "shop" is a prefix of "shop-eu": their job ids must still never share a prefix.
BENCH_IDS = ("shop", "shop-eu")
SITE = "alpha.test"
HOURS = ("2026-01-05T10:20:00", "2026-01-05T11:00:00", "2026-01-05T12:00:00", "2026-01-05T12:15:00")


def make_shared_bench(root: Path, redis_url: str, bench_id: str) -> Bench:
    """A bench like conftest's (sites alpha.test and beta.test) with its own bench_id."""
    bench = make_bench(root, redis_url)
    common = bench.common_config_path
    common.write_text(common.read_text().replace('bench_id = "testbench"', f'bench_id = "{bench_id}"'))
    return bench


@pytest.fixture
def benches(tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis) -> tuple[Bench, Bench]:
    return (
        make_shared_bench(tmp_path / "a", redis_server.url, BENCH_IDS[0]),
        make_shared_bench(tmp_path / "b", redis_server.url, BENCH_IDS[1]),
    )


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def queued(conn: redis.Redis, bench_id: str, queue: str = "default") -> list[str]:
    return [job_id.decode() for job_id in conn.lrange(f"rq:queue:{bench_id}:{queue}", 0, -1)]


def site_of_payload(conn: redis.Redis, job_id: str) -> str:
    return str(Job.fetch(job_id, connection=conn, serializer=JSONSerializer).kwargs["site"])


def enqueue_in(bench: Bench, method: str, **options: Any) -> Any:
    use_bench(bench)
    return bench_jobs.enqueue(method, **options)


def cli_json(bench: Bench, *args: str) -> Any:
    result = run_cli(*args, "--json", bench=bench)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def finish_queued_runs(conn: redis.Redis) -> int:
    """Do what workers would: take every queued job of every bench and mark it finished; returns how many."""
    taken = 0
    for queue_key in conn.keys("rq:queue:*"):
        for job_id in conn.lrange(queue_key, 0, -1):
            conn.hset(Job.key_for(job_id.decode()), "status", "finished")
            taken += 1
        conn.delete(queue_key)
    return taken


def decisions(result: TickResult) -> set[tuple[str, str, datetime, str]]:
    return {(d.site, d.job.method, d.slot, d.outcome) for d in result.decisions}


def test_both_benches_fire_every_due_slot_when_ticked_at_the_same_instants(
    benches: tuple[Bench, Bench], redis_client: redis.Redis
) -> None:
    schedulers = []
    for bench in benches:
        use_bench(bench)
        schedulers.append(Scheduler(bench, connect(load_bench_settings(bench))))
    for hour in HOURS:
        first, second = (scheduler.tick(utc(hour)) for scheduler in schedulers)
        assert decisions(first) == decisions(second), f"both benches decide the same at {hour}"
        assert first.skipped == second.skipped == second.having("sent_elsewhere") == []
        if hour == HOURS[0]:
            continue
        assert first.fired, f"something is due at {hour}"
        for bench_id in BENCH_IDS:
            ids = [job_id for queue in ("short", "default", "long") for job_id in queued(redis_client, bench_id, queue)]
            assert len(ids) == len(first.fired), f"every fired run of {bench_id} is queued"
            assert all(job_id.startswith(tuple(site_job_prefix(bench_id, s) for s in SITES)) for job_id in ids)
            assert all(site_of_payload(redis_client, job_id) in SITES for job_id in ids)
        assert finish_queued_runs(redis_client) == 2 * len(first.fired)


def test_deduplication_with_the_same_job_id_is_per_bench(
    benches: tuple[Bench, Bench], redis_client: redis.Redis
) -> None:
    def sync(bench: Bench) -> Any:
        return enqueue_in(
            bench, "sample_app.tasks.echo", record_id="1", job_id="sync-1", deduplicate=True, site="alpha.test"
        )

    first = [sync(bench) for bench in benches]
    assert all(job is not None for job in first)
    assert [sync(bench) for bench in benches] == [None, None]
    for bench_id, job in zip(BENCH_IDS, first, strict=True):
        assert queued(redis_client, bench_id) == [job.id]
        assert redis_client.exists(f"rq:job:{job.id}"), "RQ's own key name, so `rq info` reads it"
    # Without deduplicate, the same caller-given id is no twin of the other bench's job either.
    for bench in benches:
        enqueue_in(bench, "sample_app.tasks.echo", record_id="3", job_id="report-7", site="beta.test")
    assert [len(queued(redis_client, bench_id)) for bench_id in BENCH_IDS] == [2, 2]


def enqueue_mix(bench: Bench) -> list[str]:
    """Jobs with generated ids, a caller-given id and an event, on both sites of `bench`: their ids."""
    use_bench(bench)
    jobs = [
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test"),
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="y", site="beta.test", queue="long"),
        bench_jobs.enqueue(
            "sample_app.tasks.echo", record_id="z", site="alpha.test", job_id="sync-1", deduplicate=True
        ),
    ]
    return [job.id for job in jobs]


def test_show_pending_jobs_and_purge_jobs_never_list_or_delete_the_other_benchs_jobs(
    benches: tuple[Bench, Bench], redis_client: redis.Redis
) -> None:
    ids = [enqueue_mix(bench) for bench in benches]
    for bench, own in zip(benches, ids, strict=True):
        listed = cli_json(bench, "--site", "all", "show-pending-jobs")["jobs"]
        assert sorted(job["id"] for job in listed) == sorted(own)
        alpha = cli_json(bench, "--site", "alpha.test", "show-pending-jobs")["jobs"]
        assert sorted(job["id"] for job in alpha) == sorted([own[0], own[2]])

    assert cli_json(benches[0], "--site", "all", "purge-jobs", "--dry-run") == {"purged": 0, "would_purge": 3}
    assert cli_json(benches[0], "--site", "all", "purge-jobs", "--yes") == {"purged": 3}
    assert not any(redis_client.exists(Job.key_for(job_id)) for job_id in ids[0])
    assert all(redis_client.exists(Job.key_for(job_id)) for job_id in ids[1])
    assert queued(redis_client, BENCH_IDS[1]) == [ids[1][0], ids[1][2]]
    assert queued(redis_client, BENCH_IDS[1], "long") == [ids[1][1]]
    assert sorted(job["id"] for job in cli_json(benches[1], "--site", "all", "show-pending-jobs")["jobs"]) == sorted(
        ids[1]
    )


def test_a_job_id_of_the_other_bench_is_refused_by_show_failed_jobs_and_requeue(
    benches: tuple[Bench, Bench], redis_client: redis.Redis
) -> None:
    theirs = enqueue_in(benches[1], "sample_app.tasks.echo", record_id="x", site="alpha.test")
    for command in (("show-failed-jobs",), ("requeue-failed-jobs", "--yes")):
        result = run_cli("--site", "alpha.test", *command, "--job-id", theirs.id, bench=benches[0])
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith("Error: ") and "of bench shop-eu, not of bench shop" in result.stderr
        assert "Hint: Run the command in the job's bench" in result.stderr
        assert "Traceback" not in result.stderr


# RQ's keys shared by every bench on a Redis: sets of queue and worker names, its group-cleaning lock, and
# `rq suspend`'s flag (which pauses the workers of every bench: README, "Several benches on one Redis").
SHARED_KEYS = {"rq:queues", "rq:workers", "rq:clean_groups", "rq:suspended"}
JOB_KEY = re.compile(r"rq:(?:job|results|executions|execution):(?P<id>[A-Za-z0-9_-]+)(?::.*)?")
QUEUE_KINDS = (
    "queue|wip|finished|failed|deferred|scheduled|canceled|intermediate|workers|clean_registries|scheduler-lock"
)
QUEUE_KEY = re.compile(rf"rq:(?:{QUEUE_KINDS}):(?P<queue>.+)")
# Workers and their RQ schedulers are named `<encoded bench>.<uuid4 hex>`.
WORKER_KEY = re.compile(r"rq:(?:worker|scheduler):(?P<bench>[A-Za-z0-9_]+)\.[0-9a-f]{32}(?::.*)?")


def bench_of_key(key: str) -> str | None:
    """The bench a Redis key belongs to (by the job id, queue name, worker name or prefix it holds); None for
    RQ's shared keys."""
    if key in SHARED_KEYS:
        return None
    worker = WORKER_KEY.fullmatch(key)
    if worker is not None:
        return decode_part(worker["bench"])
    if key.startswith("bench_jobs:"):
        return key.split(":")[1]
    job, queue = JOB_KEY.fullmatch(key), QUEUE_KEY.fullmatch(key)
    owner = owner_of_job_id(job["id"]) if job else None
    if owner is not None:
        return owner[0]
    if queue is not None:
        return bench_id_of(queue["queue"])
    raise AssertionError(f"a key of no bench: {key}")


def calls(bench: Bench, site: str) -> list[dict[str, Any]]:
    path = bench.logs_dir / site / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_a_worker_of_one_bench_runs_only_its_own_benchs_jobs(
    benches: tuple[Bench, Bench], redis_client: redis.Redis
) -> None:
    own, other = benches
    jobs = {
        bench: [
            enqueue_in(bench, "sample_app.tasks.echo", record_id=f"{bench.root.name}-1", job_id="sync-1", site=SITE),
            enqueue_in(
                bench, "sample_app.tasks.fail", message=f"{bench.root.name} failed", job_id="nightly", site=SITE
            ),
        ]
        for bench in benches
    }
    result = run_cli("worker", "--burst", bench=own, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    assert [c["record_id"] for c in calls(own, "alpha.test") if c["event"] == "echo"] == ["a-1"]
    assert calls(other, "alpha.test") == []
    assert queued(redis_client, BENCH_IDS[1]) == [job.id for job in jobs[other]]
    assert [job.get_status() for job in jobs[own]] == ["finished", "failed"]

    result = run_cli("worker", "--burst", bench=other, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["record_id"] for c in calls(other, "alpha.test") if c["event"] == "echo"] == ["b-1"]
    assert [c["record_id"] for c in calls(own, "alpha.test") if c["event"] == "echo"] == ["a-1"]

    for bench, (_, failed) in jobs.items():
        (listed,) = cli_json(bench, "--site", "alpha.test", "show-failed-jobs")["jobs"]
        assert (listed["id"], listed["error"]) == (failed.id, f"ValueError: {bench.root.name} failed")
    assert cli_json(own, "--site", "alpha.test", "purge-jobs", "--failed", "--yes") == {"purged": 1}
    assert [job["id"] for job in cli_json(other, "--site", "alpha.test", "show-failed-jobs")["jobs"]] == [
        jobs[other][1].id
    ]
    owners = {bench_of_key(key.decode()) for key in redis_client.keys("*")}
    assert owners - {None} <= set(BENCH_IDS)
