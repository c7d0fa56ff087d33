"""Handing jobs back: executions of dead workers to RQ's abandoned-job handling, and a job taken off its
queue as Redis went away back to the front of that queue."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import redis
from rq import Queue
from rq.job import Job
from rq.rate_limit import RateLimitRegistry
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ReadyJobRegistry,
    StartedJobRegistry,
)
from rq.utils import parse_composite_key

from ..core.keys import Keys, bench_id_of
from ..jobs.liveness import orphaned, worker_is_alive
from ..jobs.rq_job import BenchJob
from .take import give_back

log = logging.getLogger("rq.worker.bench_jobs")


def recover_orphans(conn: redis.Redis, queue: Queue, bench_keys: Keys) -> int:
    """Hand jobs started by a worker that is no longer alive to RQ's abandoned-job handling (retried when
    retries are left, else failed); returns how many. RQ alone notices only minutes later."""
    registry = StartedJobRegistry(queue=queue, job_class=BenchJob)
    members = [m.decode() for m in cast(list[bytes], conn.zrange(registry.key, 0, -1))]
    if not members:
        return 0
    job_ids = [parse_composite_key(member)[0] for member in members]
    with conn.pipeline(transaction=False) as pipe:
        for member, job_id in zip(members, job_ids, strict=True):
            pipe.hget(f"rq:execution:{member}", "worker_name")  # this execution's worker, not the job's last
            pipe.hmget(Job.key_for(job_id), ["worker_name", "started_at"])
        replies = pipe.execute()
    runners = [execution or job_fields[0] for execution, job_fields in zip(replies[::2], replies[1::2], strict=True)]
    fields = [(runner, job_fields[1]) for runner, job_fields in zip(runners, replies[1::2], strict=True)]
    with conn.pipeline(transaction=False) as pipe:
        for worker, _ in fields:
            pipe.get(bench_keys.worker_alive(worker.decode() if worker else ""))
        alive = pipe.execute()
    looks_dead = {
        m: started for m, (_, started), value in zip(members, fields, alive, strict=True) if not worker_is_alive(value)
    }
    orphans = orphaned(conn, looks_dead)
    if len(orphans) < len(looks_dead):  # their alive keys expired while Redis was down: they may still be running
        waiting = len(looks_dead) - len(orphans)
        log.info("%d job(s) on %s started before Redis restarted; judged after the grace", waiting, queue.name)
    if orphans:
        _abandon(conn, registry, sorted(orphans))
        log.warning("recovered %d job(s) of dead workers on %s", len(orphans), queue.name)
    return len(orphans)


def started_members(conn: redis.Redis, queue: Queue, job_id: str) -> list[str]:
    """The started-registry members (`<job id>:<execution id>`) of one job."""
    key = StartedJobRegistry(queue=queue, job_class=BenchJob).key
    members = [m.decode() for m in cast(list[bytes], conn.zrange(key, 0, -1))]
    return [m for m in members if parse_composite_key(m)[0] == job_id]


def recover_members(conn: redis.Redis, queue: Queue, members: Sequence[str]) -> int:
    """Hand these executions, if RQ still has them as started, to its abandoned-job handling; returns how many."""
    registry = StartedJobRegistry(queue=queue, job_class=BenchJob)
    with conn.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.zscore(registry.key, member)
        present = [m for m, score in zip(members, pipe.execute(), strict=True) if score is not None]
    if present:
        _abandon(conn, registry, present)
    return len(present)


def requeue_taken(conn: redis.Redis, queue: Queue, job_id: str) -> bool:
    """A job this worker took off `queue` whose execution was never saved: back to the front, once."""
    return give_back(conn, queue, Keys(bench_id_of(queue.name)), job_id)


def _abandon(conn: redis.Redis, registry: StartedJobRegistry, members: list[str]) -> None:
    """Expire these started-registry members now, so RQ retries the jobs that have retries left and fails the
    others as abandoned."""
    conn.zadd(registry.key, dict.fromkeys(members, 0), xx=True)
    registry.cleanup(timestamp=1)


def clean_finished_registries(queue: Queue) -> None:
    """RQ's registry maintenance without its started-registry step (see BenchWorker.clean_registries)."""
    options: dict[str, Any] = {
        "connection": queue.connection,
        "job_class": queue.job_class,
        "serializer": queue.serializer,
    }
    for registry_class in (FinishedJobRegistry, FailedJobRegistry, DeferredJobRegistry, ReadyJobRegistry):
        registry_class(name=queue.name, **options).cleanup()
    for rate_limit_registry in RateLimitRegistry.all(queue.connection):
        rate_limit_registry.cleanup()
