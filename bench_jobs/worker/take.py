"""Taking a job off its queue: sites take turns, a site's cap holds, an idle worker wakes at once, and a
SIGKILL at any instant loses nothing.

Fair: within each queue (served in the worker's order), the take serves the site with the lowest pass that is
under its `max_concurrent_jobs`, FIFO within the site (jobs/fair.py keeps the index every push writes). A
capped site's taken and running jobs hold a place in its running set, with a lease its worker renews, so a
dead worker's places free themselves.

Crash-safe: RQ 3 pops from several queues with BLPOP, and between the pop and the worker's first write about
the job the id is in no list and no registry, so a kill there drops it for good. Here one Lua script moves the
id from its queue to that queue's intermediate list (RQ's key name, `<queue key>:intermediate`) and records
which worker took it, in one step. The worker then claims the job in one MULTI (the execution, status
`started`, and the id leaves the intermediate list: see BenchWorker.claim_execution). An id still in an
intermediate list whose taker is dead goes back to the front of its queue (`recover_taken`), never to failed:
it never started.

No polling: every push also leaves a token on its queue's wake list, and a worker whose sweep found nothing
blocks on the wake lists of all its queues (one BLPOP) until a token comes, a retry or delayed job falls due,
or RQ's dequeue timeout ends.
"""

from __future__ import annotations

import contextvars
import logging
import re
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
from ..core.keys import Keys, bench_id_of, queue_of
from ..jobs.fair import FAIR_LUA, RUNNING_LEASE_S
from ..jobs.liveness import worker_is_alive
from ..jobs.queues import BenchQueue
from ..jobs.rq_job import bench_failure_ttl_s
from .due import move_due_jobs_now_and_then

WAKE_MIN_WAIT_S = 0.01  # BLPOP's 0 would block forever
RQ_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")  # what RQ builds a Job from
STALE_BUDGET = 100  # ids dropped from the fair index (left the queue some other way) per take, at most
TURNS_PAGE = 64  # sites looked at per page of turns; a next page only when none in this one could be taken

log = logging.getLogger("rq.worker.bench_jobs")

# The name of the worker whose dequeue runs in this context (RQ's dequeue_any is a classmethod that is not
# told which worker calls it).
taker: contextvars.ContextVar[str] = contextvars.ContextVar("bench_jobs_taker", default="")

# KEYS: the queue keys in serving order, then the taken hash. ARGV: the taker's name, RQ's job key prefix,
# the lease of a capped job's place (ms).
# Returns the queue key, the job id, the job's hash (what RQ's fetch would read next: one round trip less) and
# the running set that holds the job's place ('' when its site has no cap); all empty when stale ids were
# dropped and the sweep should run again; false when nothing can be taken.
TAKE_LUA = (
    FAIR_LUA
    + f"""
local taken = KEYS[#KEYS]
local now_ms = redis_ms()
local budget = {STALE_BUDGET}
for i = 1, #KEYS - 1 do
  local qkey = KEYS[i]
  local fair, _, base = fair_names(qkey)
  local vt = tonumber(redis.call('GET', fair .. ':vt') or '0')
  for _, site in ipairs(redis.call('ZRANGEBYSCORE', fair, '-inf', '(0')) do  -- newcomers: see jobs/fair.py
    local left = tonumber(redis.call('HGET', fair .. ':left', site) or '0')
    redis.call('ZADD', fair, math.max(vt, left), site)
    redis.call('HDEL', fair .. ':left', site)
  end
  local offset = 0
  while true do
    local turns = redis.call('ZRANGE', fair, offset, offset + {TURNS_PAGE - 1}, 'WITHSCORES')
    if #turns == 0 then break end
    local capped = 0
    for j = 1, #turns, 2 do
      local site, pass = turns[j], tonumber(turns[j + 1])
      local cap = tonumber(redis.call('HGET', base .. ':caps', site) or '0') or 0
      local running = base .. ':running:' .. site
      local open = true
      if cap > 0 then
        redis.call('ZREMRANGEBYSCORE', running, '-inf', now_ms)
        open = redis.call('ZCARD', running) < cap
      end
      if not open then
        capped = capped + 1
      else
        local line = fair .. ':site:' .. site
        while true do
          local id = redis.call('LPOP', line)
          if not id then redis.call('ZREM', fair, site); break end
          if redis.call('LREM', qkey, 1, id) == 1 then
            if pass > vt then redis.call('SET', fair .. ':vt', turns[j + 1]) end  -- it never goes back
            redis.call('RPUSH', qkey .. ':intermediate', id)
            redis.call('HSET', taken, id, ARGV[1])
            if cap > 0 then
              redis.call('ZADD', running, now_ms + tonumber(ARGV[3]), id .. '|' .. ARGV[1])
            else
              running = ''
            end
            local weight = tonumber(redis.call('HGET', base .. ':weights', site) or '1') or 1
            if redis.call('EXISTS', line) == 1 then
              redis.call('ZADD', fair, pass + 1 / weight, site)
            else  -- drained: its next pass waits for its next job, which must not get this turn again
              redis.call('ZREM', fair, site)
              redis.call('HSET', fair .. ':left', site, pass + 1 / weight)
            end
            return {{qkey, id, redis.call('HGETALL', ARGV[2] .. id), running}}
          end
          redis.call('SET', fair .. ':stale', '1')
          budget = budget - 1
          if budget <= 0 then return {{'', '', {{}}, ''}} end
        end
      end
    end
    offset = offset + capped  -- nothing in this page could be taken: its drained sites left the turns
  end
end
return false
"""
)

# An id taken but never claimed, whose taker is dead (or who found it given back): back to the front of its
# queue, once, and out of its site's running set; an id that is no longer queued (claimed since, or deleted)
# only leaves the intermediate list. KEYS: queue, its intermediate list, job hash, taken hash. ARGV: job id.
GIVE_BACK_LUA = (
    FAIR_LUA
    + """
if redis.call('LREM', KEYS[2], 0, ARGV[1]) == 0 and redis.call('HEXISTS', KEYS[4], ARGV[1]) == 0 then
  return 0
end
local taker = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local _, _, base = fair_names(KEYS[1])
if taker then redis.call('ZREM', base .. ':running:' .. site_of(KEYS[1], ARGV[1]), ARGV[1] .. '|' .. taker) end
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
fair_push(KEYS[1], ARGV[1], true)
return 1
"""
)


# Takers whose last take's reply was lost (a dropped connection, a timeout): the take may have moved a job to
# an intermediate list under their name, and a live taker's ids are never given back by recovery. Each is given
# back at every take until UNSURE_FOR_S after the first look that Redis answered (None: not answered yet), so a
# take that was still in a socket buffer then, and lands a moment later, is given back too.
UNSURE_FOR_S = 2.0
_unsure_takers: dict[str, float | None] = {}


def give_back_mine(conn: redis.Redis, queues: Iterable[Queue], bench_keys: Keys, taker_name: str) -> int:
    """Give back the ids `taker_name` took and did not claim (a worker dequeues only between jobs, so it holds
    none then: any is a take whose reply was lost); returns how many went back."""
    returned = 0
    for queue in queues:
        waiting = [as_text(m) for m in cast(list[bytes], conn.lrange(intermediate_key(queue.key), 0, -1))]
        takers = cast(list[Any], conn.hmget(bench_keys.taken, waiting)) if waiting else []
        for job_id, name in zip(waiting, takers, strict=True):
            if name is not None and as_text(name) == taker_name and give_back(conn, queue, bench_keys, job_id):
                returned += 1
                log.warning("job %s: the reply of its take was lost; back at the front of %s", job_id, queue.name)
    return returned


def place(job_id: str, taker_name: str) -> str:
    """A capped job's member in its site's running set: one per take, so that two runs of one id (a retry
    taken before the first run's end was recorded) never share, nor free, one place."""
    return f"{job_id}|{taker_name}"


def queue_of_key(queue_key: str) -> str:
    """The RQ queue name of a queue key."""
    return queue_key.removeprefix(Queue.redis_queue_namespace_prefix)


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
        bench_keys = Keys(bench_id_of(queue_list[0].name))
        keys = [queue.key for queue in queue_list] + [bench_keys.taken]
        wake_keys = [bench_keys.wake(queue_of(queue.name)) for queue in queue_list]
        take = lua(connection, TAKE_LUA)
        lease_ms = RUNNING_LEASE_S * 1000
        deadline = None if timeout is None else time.monotonic() + timeout
        woken = False
        while True:
            # Retries and delayed jobs never wait on RQ's scheduler alone; a wake-up that brought no job may be
            # for one just scheduled, so it looks again at once.
            due_in_s = move_due_jobs_now_and_then(connection, queue_list, now=woken)
            if taker.get() in _unsure_takers:  # its last take's reply was lost: that take may have landed
                give_back_mine(connection, queue_list, bench_keys, taker.get())
                until = _unsure_takers[taker.get()]
                if until is None:
                    _unsure_takers[taker.get()] = time.monotonic() + UNSURE_FOR_S
                elif time.monotonic() >= until:
                    del _unsure_takers[taker.get()]
            try:
                hit = take(keys=keys, args=[taker.get(), Job.redis_job_namespace_prefix, lease_ms])
            except (redis.ConnectionError, redis.TimeoutError):
                _unsure_takers[taker.get()] = None
                raise
            if hit:
                queue_key, job_id, fields, running = (as_text(hit[0]), as_text(hit[1]), hit[2], as_text(hit[3]))
                if not job_id:
                    continue  # stale ids were dropped from the index: sweep again
                found = cls._taken(connection, queue_key, job_id, fields, running, job_class, serializer)
                if found is not None:
                    found[0].bench_running_key = running  # type: ignore[attr-defined]
                    return found
                continue
            if deadline is None:
                return None  # burst: one sweep
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, keys[:-1])
            # Wait for a push (any of these queues) or the next due retry, whichever comes first.
            woken = connection.blpop(wake_keys, timeout=max(WAKE_MIN_WAIT_S, min(left, due_in_s))) is not None

    @classmethod
    def _taken(
        cls,
        connection: redis.Redis,
        queue_key: str,
        job_id: str,
        fields: list[bytes],
        running: str,
        job_class: type[Job] | None,
        serializer: Any,
    ) -> tuple[Job, Queue] | None:
        """The job the take moved, or None when there is nothing to run: its hash is gone (only the id is
        cleared away) or unreadable (the job is failed with its reason, and the worker goes on)."""
        try:
            found = cls._restore_taken(
                connection,
                queue_key,
                job_id,
                dict(zip(fields[::2], fields[1::2], strict=True)),
                job_class=job_class,
                serializer=serializer,
            )
        except redis.RedisError:
            raise
        except Exception as exc:  # RQ would quit the worker, and every worker after it, on this entry
            fail_unreadable(connection, queue_key, job_id, Keys(bench_id_of(queue_of_key(queue_key))), exc, running)
            return None
        if found is None:
            with connection.pipeline() as pipe:
                pipe.lrem(intermediate_key(queue_key), 0, job_id)
                pipe.hdel(Keys(bench_id_of(queue_of_key(queue_key))).taken, job_id)
                if running:
                    pipe.zrem(running, place(job_id, taker.get()))
                pipe.execute()
        return found

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


def fail_unreadable(
    conn: redis.Redis, queue_key: str, job_id: str, bench_keys: Keys, exc: Exception, running: str = ""
) -> None:
    """A taken entry RQ cannot read, instead of stopping the worker that took it (and every worker after it):
    a job whose hash is malformed (a bad date or number, written by someone else) is failed with the reason,
    in the failed registry of its queue; an id RQ refuses to build a job from (not `[A-Za-z0-9_-]+`) would
    break every reader of that registry, so it is set aside in `bench_jobs:<bench>:set_aside` with the reason."""
    reason = f"Job {job_id!r} cannot be read, so it is not run: {type(exc).__name__}: {exc}"
    log.error("%s", reason.replace("\n", " "))
    ttl_s = bench_failure_ttl_s() or DEFAULT_FAILURE_TTL_S
    queue_name = queue_key.removeprefix(Queue.redis_queue_namespace_prefix)
    with conn.pipeline() as pipe:
        pipe.lrem(intermediate_key(queue_key), 0, job_id)
        pipe.hdel(bench_keys.taken, job_id)
        if running:
            pipe.zrem(running, place(job_id, taker.get()))
        if RQ_JOB_ID.fullmatch(job_id):
            pipe.hset(Job.key_for(job_id), "status", JobStatus.FAILED.value)
            pipe.zadd(FailedJobRegistry(queue_name, connection=conn).key, {job_id: time.time() + ttl_s})
            Result.create_failure(Job(job_id, connection=conn), ttl_s, reason, pipeline=pipe)
        else:
            pipe.hset(bench_keys.set_aside, job_id, reason)
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
