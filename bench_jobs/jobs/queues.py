"""RQ queues of a bench: names, order, JSON serializer, and the Lua used for atomic deduplication."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from ..core.config import BenchSettings
from ..core.connection import lua, on_forget
from ..core.keys import Keys, bench_id_of, queue_of, rq_queue_name
from .fair import FAIR_LUA, queue_push, wake
from .liveness import STARTED_BEFORE_RESTART_LUA
from .rq_job import BenchJob

BUILTIN_ORDER = ("short", "default", "long")

_queues: dict[tuple[int, str, str, int], BenchQueue] = {}


class BenchQueue(Queue):
    """Every RQ queue bench-jobs reads or serves: JSON payloads and BenchJob (RQ's defaults are pickle and its
    plain Job, which RQ's WorkerPool would otherwise use for maintenance), and no
    job dependents: bench-jobs never makes a job depend on another, so the `rq:job:<id>:dependents` set a
    finished or failed job's worker would read (and whose jobs it would enqueue) was written by someone else."""

    def __init__(
        self,
        name: str = "default",
        connection: redis.Redis | None = None,
        default_timeout: int | None = None,
        is_async: bool = True,
        job_class: str | type[Job] | None = None,
        serializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            name,
            connection,
            default_timeout,
            is_async,
            _bench_job_class(job_class),
            serializer or JSONSerializer,
            **kwargs,
        )

    def push_job_id(self, job_id: str, pipeline: Any = None, at_front: bool = False) -> None:
        """RQ's push, which also gives the job's site its turn (jobs/fair.py); every RQ path that queues a job
        (enqueue, requeue of a failed job) comes through here."""
        with self.connection.pipeline(transaction=False) as own:
            queue_push(own if pipeline is None else pipeline, *self._fair_names, self.key, job_id, at_front)
            if pipeline is None:
                own.execute()

    @property
    def _fair_names(self) -> tuple[str, str]:
        return bench_id_of(self.name), queue_of(self.name)

    def schedule_job(self, job: Job, datetime: datetime, pipeline: Any = None, unique: bool = False) -> Job:
        """RQ's, which also wakes the idle workers of this queue, so they wait for this job's time too (a retry
        delay, or a delayed job)."""
        scheduled = super().schedule_job(job, datetime, pipeline=pipeline, unique=unique)
        with self.connection.pipeline(transaction=False) as own:
            wake(own if pipeline is None else pipeline, Keys(bench_id_of(self.name)).wake(queue_of(self.name)))
            if pipeline is None:
                own.execute()
        return scheduled

    def move_dependents_to_ready(self, *args: Any, **kwargs: Any) -> dict[str, list[str]]:
        return {}

    def enqueue_dependents(self, *args: Any, **kwargs: Any) -> dict[str, list[str]]:
        return {}


def _bench_job_class(job_class: str | type[Job] | None) -> type[Job]:
    """BenchJob, or a subclass of it: never RQ's plain Job, whatever a caller passes."""
    return job_class if isinstance(job_class, type) and issubclass(job_class, BenchJob) else BenchJob


def queue_order(settings: BenchSettings) -> list[str]:
    """Every queue of the bench in serving order: short, default, long, then custom queues by name."""
    builtin = [name for name in BUILTIN_ORDER if name in settings.queues]
    return builtin + sorted(name for name in settings.queues if name not in BUILTIN_ORDER)


def rq_queue(conn: redis.Redis, settings: BenchSettings, queue: str) -> BenchQueue:
    """The RQ queue for `queue` (JSON payloads, BenchJob, the queue's default timeout); cached per connection."""
    timeout_s = settings.queue(queue).timeout_s
    key = (id(conn), settings.bench_id, queue, timeout_s)
    cached = _queues.get(key)
    if cached is None:
        cached = BenchQueue(rq_queue_name(settings.bench_id, queue), connection=conn, default_timeout=timeout_s)
        _queues[key] = cached
    return cached


# Enqueue (or schedule) a job unless a job with its id is queued, scheduled, deferred or started on a live
# worker. A finished, failed, stopped or orphaned job with that id is replaced (and leaves its registries), so a
# dead run never blocks the next one (Frappe's "already in queue" for days). With a due time (epoch s), the job
# goes into the scheduled registry instead of the queue, and one idle worker is woken to wait for that time.
# KEYS: job hash, queue list, queues set, finished, failed and canceled registries, started registry,
# scheduled registry
# ARGV: job id, push direction (L/R), queue key, worker-alive key prefix, due time ('' to queue now), then HSET
# field/value pairs
DEDUP_ENQUEUE_LUA = (
    STARTED_BEFORE_RESTART_LUA
    + FAIR_LUA
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'queued' or status == 'scheduled' or status == 'deferred' then
  return 0
end
if status == 'started' then
  local worker = redis.call('HGET', KEYS[1], 'worker_name')
  if worker and worker ~= '' and (redis.call('EXISTS', ARGV[4] .. worker) == 1 or started_before_restart(KEYS[1])) then
    return 0
  end
end
if status then
  redis.call('DEL', KEYS[1])
  for i = 4, 6 do redis.call('ZREM', KEYS[i], ARGV[1]) end
  local cursor = '0'
  repeat
    local page = redis.call('ZSCAN', KEYS[7], cursor, 'MATCH', ARGV[1] .. ':*')
    cursor = page[1]
    for i = 1, #page[2], 2 do redis.call('ZREM', KEYS[7], page[2][i]) end
  until cursor == '0'
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[5] == '' then
  fair_push(KEYS[2], ARGV[1], ARGV[2] == 'L')
else
  redis.call('ZADD', KEYS[8], ARGV[5], ARGV[1])
  fair_wake(KEYS[2])
end
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"""
)


def forget_queues() -> None:
    """Drop cached queues (with their connections)."""
    _queues.clear()


on_forget(forget_queues)


def dedup_script(conn: redis.Redis) -> Any:
    return lua(conn, DEDUP_ENQUEUE_LUA)
