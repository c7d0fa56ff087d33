"""Handing jobs back: executions of dead workers to RQ's abandoned-job handling, and a job taken off its
queue as Redis went away back to the front of that queue.

A started-registry member of a dead worker is settled by what its job's status says, because a kill can land
between two writes of one step (RQ's `Job.retry` writes `scheduled` at once and registers the retry in a
pipeline after it). RQ's own clean-up handles only `started` and drops every other member, which left such a
retry in no list or registry for good. One script settles each member atomically:

    job status   where the id also is                 what recovery does
    started      its function never called (below)    back to the front of its queue (fair index), out of
                                                      its site's running set; retries_left untouched
    started      otherwise                            RQ's abandoned-job handling: retried, else failed
    scheduled    its queue's scheduled registry       drops the stale member
    scheduled    no scheduled registry                scheduled to run now (its retry delay was lost), then
                                                      drops the member
    queued       its queue or its intermediate list   drops the stale member
    queued       no list                              pushed back onto its queue, then drops the member
    finished, failed, stopped, canceled, deferred     drops the stale member
    (no job hash)                                     drops the stale member

"Never called" is proved by a mark, never presumed from its absence: the claim (BenchWorker.claim_execution)
writes NOT_STARTED_FIELD = its execution id into the job's hash, in its MULTI, and the horse's preparation
(OutageTolerantWorker.prepare_job_execution) deletes it in RQ's MULTI that goes out right before the function
is called. So the mark still naming this member's execution means that MULTI never landed, and the function
was never called; no extra command or round trip per job. A mark that is gone (the preparation landed: the
function may have been called, or the kill came just before it), or names another execution, or any job
claimed otherwise, goes to RQ's abandoned-job handling as before.

A retry cut off this way was not counted (its decrement of retries_left was in the lost pipeline): the job
may run once more than its retries allow, never fewer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
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

from ..core.connection import lua
from ..core.keys import Keys, bench_id_of
from ..jobs.fair import FAIR_LUA
from ..jobs.liveness import orphaned, worker_is_alive
from ..jobs.rq_job import BenchJob
from .take import RQ_JOB_ID, give_back, intermediate_key

log = logging.getLogger("rq.worker.bench_jobs")

# A field of a job's hash: the id of the execution that claimed it, until the horse's preparation for calling
# its function lands (the module docstring).
NOT_STARTED_FIELD = "bench_jobs_not_started"
ABANDON_LOCK_MS = 30_000  # _abandoning: longer than RQ's handling of a registry's abandoned jobs takes
ABANDON_WAIT_S = ABANDON_LOCK_MS / 1000
RELEASE_LUA = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

# Settles the started-registry members whose job is not `started`, or is `started` but never called (the table
# above); returns the members whose job is still `started`, then those put back at the front of their queue.
# KEYS: started registry, scheduled registry, queue, its intermediate list. ARGV: now (epoch s), job key
# prefix, then pairs of (member, job id).
SETTLE_MEMBERS_LUA = (
    FAIR_LUA
    + """
local started, requeued = {}, {}
local _, _, base = fair_names(KEYS[3])
for i = 3, #ARGV, 2 do
  local member, id = ARGV[i], ARGV[i + 1]
  local key = ARGV[2] .. id
  local status = redis.call('HGET', key, 'status')
  local execution = string.sub(member, #id + 2)
  if status == 'started' and execution ~= '' and redis.call('HGET', key, 'NOT_STARTED') == execution then
    local worker = redis.call('HGET', key, 'worker_name')
    redis.call('HSET', key, 'status', 'queued')
    redis.call('HDEL', key, 'NOT_STARTED')
    if worker then redis.call('ZREM', base .. ':running:' .. site_of(KEYS[3], id), id .. '|' .. worker) end
    if not redis.call('LPOS', KEYS[3], id) and not redis.call('LPOS', KEYS[4], id) then
      fair_push(KEYS[3], id, true)
    end
    redis.call('ZREM', KEYS[1], member)
    table.insert(requeued, member)
  elseif status == 'started' then
    table.insert(started, member)
  else
    if status == 'scheduled' and not redis.call('ZSCORE', KEYS[2], id) then
      redis.call('ZADD', KEYS[2], ARGV[1], id)
    elseif status == 'queued' and not redis.call('LPOS', KEYS[3], id) and not redis.call('LPOS', KEYS[4], id) then
      fair_push(KEYS[3], id, false)
    end
    redis.call('ZREM', KEYS[1], member)
  end
end
return {started, requeued}
"""
).replace("NOT_STARTED", NOT_STARTED_FIELD)


def recover_orphans(conn: redis.Redis, queue: Queue, bench_keys: Keys) -> int:
    """Hand jobs started by a worker that is no longer alive to RQ's abandoned-job handling (retried when
    retries are left, else failed); returns how many. RQ alone notices only minutes later."""
    registry = StartedJobRegistry(queue=queue, job_class=BenchJob)
    members = [m.decode() for m in cast(list[bytes], conn.zrange(registry.key, 0, -1))]
    if not members:
        return 0
    unreadable = [member for member in members if not RQ_JOB_ID.fullmatch(parse_composite_key(member)[0])]
    if unreadable:  # RQ cannot build a job from these ids: set aside, or every worker would stop on them
        set_aside(conn, registry.key, bench_keys, unreadable)
        members = [member for member in members if member not in unreadable]
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
        _abandon(conn, queue, sorted(orphans))
        log.warning("recovered %d job(s) of dead workers on %s", len(orphans), queue.name)
    return len(orphans)


def set_aside(conn: redis.Redis, registry_key: str, bench_keys: Keys, members: Sequence[str]) -> None:
    """Take started-registry members whose job id RQ refuses out of the registry, into
    `bench_jobs:<bench>:set_aside` with the reason (nothing of them can run or be failed as a job)."""
    with conn.pipeline(transaction=False) as pipe:
        for member in members:
            reason = f"started-registry entry {member!r}: its job id is not [A-Za-z0-9_-]+, so RQ cannot read it"
            log.error("set aside %s", reason)
            pipe.zrem(registry_key, member)
            pipe.hset(bench_keys.set_aside, member, reason)
        pipe.execute()


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
        _abandon(conn, queue, present)
    return len(present)


def requeue_taken(conn: redis.Redis, queue: Queue, job_id: str) -> bool:
    """A job this worker took off `queue` whose execution was never saved: back to the front, once."""
    return give_back(conn, queue, Keys(bench_id_of(queue.name)), job_id)


def _abandon(conn: redis.Redis, queue: Queue, members: list[str], now_s: float | None = None) -> None:
    """Settle these started-registry members of dead workers by their job's status (the module's table): a
    job whose function was never called goes back to the front of its queue; RQ's abandoned-job handling
    takes the others still `started`, which retries those with retries left and fails the others as
    abandoned."""
    registry = StartedJobRegistry(queue=queue, job_class=BenchJob)
    still_started, requeued = settle_members(conn, queue, members, time.time() if now_s is None else now_s)
    for member in requeued:
        log.warning(
            "job %s was claimed by a worker that died before calling it; back at the front of %s",
            parse_composite_key(member)[0],
            queue.name,
        )
    if still_started:
        with _abandoning(conn, queue):
            conn.zadd(registry.key, dict.fromkeys(still_started, 0), xx=True)
            registry.cleanup(timestamp=1)


@contextlib.contextmanager
def _abandoning(conn: redis.Redis, queue: Queue) -> Any:
    """One RQ abandoned-job handling at a time per queue: RQ's StartedJobRegistry.cleanup reads each job and
    retries or fails it outside any transaction, so two at once (workers starting together after a host
    crash, a settle beside a maintenance run) both retried one job and pushed it twice. The lock expires by
    itself if its holder dies; a waiter goes on after ABANDON_WAIT_S, as the lock would by then."""
    key = f"{Keys(bench_id_of(queue.name)).prefix}:abandoning:{queue.name}"
    token = os.urandom(8).hex()
    deadline = time.monotonic() + ABANDON_WAIT_S
    while not conn.set(key, token, nx=True, px=ABANDON_LOCK_MS) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield
    finally:
        lua(conn, RELEASE_LUA)(keys=[key], args=[token])


def settle_members(
    conn: redis.Redis, queue: Queue, members: Sequence[str], now_s: float
) -> tuple[list[str], list[str]]:
    """Settle, atomically, the members whose job is not `started` (queued, scheduled or dropped) or was never
    called (back at the front of its queue); returns the members whose job is still `started`, and those
    put back at the front."""
    keys = [
        StartedJobRegistry(queue=queue, job_class=BenchJob).key,
        queue.scheduled_job_registry.key,
        queue.key,
        intermediate_key(queue.key),
    ]
    args: list[str | int] = [int(now_s), Job.redis_job_namespace_prefix]
    for member in members:
        args += [member, parse_composite_key(member)[0]]
    started, requeued = lua(conn, SETTLE_MEMBERS_LUA)(keys=keys, args=args)
    return [m.decode() for m in started], [m.decode() for m in requeued]


def clean_finished_registries(queue: Queue) -> None:
    """RQ's registry maintenance without its started-registry step (see BenchWorker.clean_registries)."""
    options: dict[str, Any] = {
        "connection": queue.connection,
        "job_class": queue.job_class,
        "serializer": queue.serializer,
    }
    for registry_class in (FinishedJobRegistry, FailedJobRegistry, DeferredJobRegistry, ReadyJobRegistry):
        registry_class(name=queue.name, **options).cleanup()
    # RQ's rate limits are server-wide (`rq:rl-keys`) and bench-jobs makes none: a bench's ACL user
    # (create-rq-users) may not read them, and leaves them to whoever made them.
    with contextlib.suppress(redis.exceptions.NoPermissionError):
        for rate_limit_registry in RateLimitRegistry.all(queue.connection):
            rate_limit_registry.cleanup()
