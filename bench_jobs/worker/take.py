"""Taking a job off its queue so that a SIGKILL at any instant loses nothing.

RQ 3 pops from several queues with BLPOP: between the pop and the worker's first write about the job, the id
is in no list and no registry, and a kill there drops it for good. bench-jobs takes every job (one queue or
several) with one Lua script that moves the id from its queue to that queue's intermediate list (RQ's key
name, `<queue key>:intermediate`) and records which worker took it, in one step. The worker then claims the
job in one MULTI (the execution, status `started`, and the id leaves the intermediate list: see
BenchWorker.claim_execution). An id still in an intermediate list whose taker is dead goes back to the
front of its queue (`recover_taken`), never to failed: it never started.

Redis has no blocking move from several lists, so an empty sweep is retried after a short sleep (at most
POLL_MAX_S): a few cheap script calls a second per idle worker.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterable
from typing import Any, cast

import redis
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.utils import as_text, backend_class

from ..core.config import DEFAULT_FAILURE_TTL_S
from ..core.connection import lua
from ..core.keys import Keys, bench_id_of
from ..jobs.liveness import worker_is_alive
from ..jobs.queues import BenchQueue
from ..jobs.rq_job import bench_failure_ttl_s
from .due import move_due_jobs_now_and_then

POLL_FIRST_S = 0.02
POLL_MAX_S = 0.25

log = logging.getLogger("rq.worker.bench_jobs")

# The name of the worker whose dequeue runs in this context (RQ's dequeue_any is a classmethod that is not
# told which worker calls it).
taker: contextvars.ContextVar[str] = contextvars.ContextVar("bench_jobs_taker", default="")

# KEYS: the queue keys in serving order, then the taken hash. ARGV: the taker's name, RQ's job key prefix.
# Returns the queue key, the job id and the job's hash (what RQ's fetch would read next: one round trip less).
TAKE_LUA = """
local taken = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  local id = redis.call('LMOVE', KEYS[i], KEYS[i] .. ':intermediate', 'LEFT', 'RIGHT')
  if id then
    redis.call('HSET', taken, id, ARGV[1])
    return {KEYS[i], id, redis.call('HGETALL', ARGV[2] .. id)}
  end
end
return false
"""

# An id taken but never claimed, whose taker is dead: back to the front of its queue, once; an id that is no
# longer queued (claimed since, or deleted) only leaves the intermediate list.
# KEYS: queue, its intermediate list, job hash, taken hash. ARGV: job id.
GIVE_BACK_LUA = """
if redis.call('LREM', KEYS[2], 0, ARGV[1]) == 0 and redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then
  return 0
end
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
return 1
"""


def intermediate_key(queue_key: str) -> str:
    return IntermediateQueue.get_intermediate_queue_key(queue_key)


class WorkerQueue(BenchQueue):
    """The queue class of a worker: a BenchQueue whose dequeue moves the id atomically and records the taker
    (see the module docstring)."""

    @classmethod
    def dequeue_any(  # type: ignore[override]
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: redis.Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        queue_list = list(queues)
        taken = Keys(bench_id_of(queue_list[0].name)).taken
        keys = [queue.key for queue in queue_list] + [taken]
        take = lua(connection, TAKE_LUA)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_FIRST_S
        while True:
            move_due_jobs_now_and_then(connection, queue_list)  # retries never wait on RQ's scheduler alone
            hit = take(keys=keys, args=[taker.get(), Job.redis_job_namespace_prefix])
            if hit:
                queue_key, job_id, fields = as_text(hit[0]), as_text(hit[1]), hit[2]
                try:
                    found = cls._restore_taken(
                        connection,
                        queue_key,
                        job_id,
                        dict(zip(fields[::2], fields[1::2], strict=True)),
                        job_class=job_class,
                        serializer=serializer,
                        death_penalty_class=death_penalty_class,
                    )
                except redis.RedisError:
                    raise
                except Exception as exc:  # RQ would quit the worker, and every worker after it, on this hash
                    fail_unreadable(connection, queue_key, job_id, taken, exc)
                    continue
                if found is not None:
                    return found
                with connection.pipeline() as pipe:  # the hash is gone: nothing to run, nothing to give back
                    pipe.lrem(intermediate_key(queue_key), 0, job_id)
                    pipe.hdel(taken, job_id)
                    pipe.execute()
                continue
            if deadline is None:
                return None  # burst: one sweep
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, keys[:-1])
            time.sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX_S)

    @classmethod
    def _restore_taken(
        cls,
        connection: redis.Redis,
        queue_key: str,
        job_id: str,
        data: dict[bytes, bytes],
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        """RQ's `_fetch_dequeued_job` for a hash the take already read: None when the job is gone; other errors
        carry the job id and queue, as RQ's do."""
        job_cls: type[Job] = backend_class(cls, "job_class", override=job_class)
        queue = cls.from_queue_key(
            queue_key,
            connection=connection,
            job_class=job_cls,
            serializer=serializer,
            death_penalty_class=death_penalty_class,
        )
        if not data:
            return None
        job = job_cls(job_id, connection=connection, serializer=serializer)
        try:
            job.restore(data)
        except Exception as exc:
            exc.job_id = job_id  # type: ignore[attr-defined]
            exc.queue = queue  # type: ignore[attr-defined]
            raise
        return job, queue


def fail_unreadable(conn: redis.Redis, queue_key: str, job_id: str, taken: str, exc: Exception) -> None:
    """A taken job whose hash RQ cannot read (a malformed date or number, written by someone else): failed with
    the reason, in the failed registry of its queue, instead of stopping the worker that took it."""
    reason = f"Job {job_id} cannot be read, so it is not run: {type(exc).__name__}: {exc}"
    log.error("%s", reason)
    ttl_s = bench_failure_ttl_s() or DEFAULT_FAILURE_TTL_S
    queue_name = queue_key.removeprefix(Queue.redis_queue_namespace_prefix)
    with conn.pipeline() as pipe:
        pipe.lrem(intermediate_key(queue_key), 0, job_id)
        pipe.hdel(taken, job_id)
        pipe.hset(Job.key_for(job_id), "status", JobStatus.FAILED.value)
        pipe.zadd(FailedJobRegistry(queue_name, connection=conn).key, {job_id: time.time() + ttl_s})
        Result.create_failure(Job(job_id, connection=conn), ttl_s, reason, pipeline=pipe)
        pipe.execute()


def recover_taken(conn: redis.Redis, queue: Queue, bench_keys: Keys) -> int:
    """Give back to the front of `queue` the ids taken by workers that are no longer alive and never claimed;
    returns how many went back. A taker misjudged dead (its key expired in an outage or a stall) cannot run the
    job as well: its claim checks that it is still the taker (BenchWorker.claim_execution)."""
    waiting = [as_text(m) for m in cast(list[bytes], conn.lrange(intermediate_key(queue.key), 0, -1))]
    if not waiting:
        return 0
    takers = cast(list[Any], conn.hmget(bench_keys.taken, waiting))
    names = [as_text(name) if name else "" for name in takers]
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.get(bench_keys.worker_alive(name))
        alive = pipe.execute()
    returned = 0
    for job_id, name, value in zip(waiting, names, alive, strict=True):
        if name and worker_is_alive(value):
            continue
        if give_back(conn, queue, bench_keys, job_id):
            returned += 1
            log.warning(
                "job %s was taken by %s, which died before starting it; back at the front of %s",
                job_id,
                name or "an unknown worker",
                queue.name,
            )
    return returned


def give_back(conn: redis.Redis, queue: Queue, bench_keys: Keys, job_id: str) -> bool:
    """Put a taken, never-started job back at the front of `queue` (once; not if it is no longer queued)."""
    keys = [queue.key, intermediate_key(queue.key), Job.key_for(job_id), bench_keys.taken]
    return bool(lua(conn, GIVE_BACK_LUA)(keys=keys, args=[job_id]))
