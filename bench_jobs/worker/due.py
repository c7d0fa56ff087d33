"""Moving due retries and delayed jobs from their queue's scheduled registry back onto the queue, atomically.

RQ leaves this to one scheduler process per queue, holding a lock with a 61 s TTL and looking for newly freed
locks only every 10 minutes, and its move is not atomic (its own code says so). A SIGKILLed worker's scheduler
therefore left retries waiting for minutes, and two movers could push one job twice. Here one Lua script moves
each due id at most once (ZREM decides), whoever runs it: RQ's scheduler process (BenchScheduler) and every
worker's dequeue loop, at most once a second, so a retry is never held up by a dead scheduler's locks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone

import redis
from rq import Queue
from rq.job import Job
from rq.utils import utcformat

from ..core.connection import lua

MOVE_EVERY_S = 1.0
BATCH = 500  # ids per queue per call

# KEYS: pairs of (scheduled registry, queue list). ARGV: cutoff epoch s, job key prefix, batch, enqueued_at.
MOVE_DUE_LUA = """
local moved = 0
for i = 1, #KEYS, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
  for _, id in ipairs(due) do
    if redis.call('ZREM', KEYS[i], id) == 1 and redis.call('EXISTS', ARGV[2] .. id) == 1 then
      redis.call('HSET', ARGV[2] .. id, 'status', 'queued', 'enqueued_at', ARGV[4])
      redis.call('RPUSH', KEYS[i + 1], id)
      moved = moved + 1
    end
  end
end
return moved
"""

_last_move = 0.0


def move_due_jobs(conn: redis.Redis, queues: Sequence[Queue], now: datetime | None = None) -> int:
    """Push every job of `queues` whose scheduled time has come onto its queue; returns how many moved."""
    if not queues:
        return 0
    now = now or datetime.now(timezone.utc)
    script = lua(conn, MOVE_DUE_LUA)
    keys: list[str] = []
    for queue in queues:
        keys += [queue.scheduled_job_registry.key, queue.key]
    args: list[str | int] = [int(now.timestamp()), Job.redis_job_namespace_prefix, BATCH, utcformat(now)]
    return int(script(keys=keys, args=args))


def move_due_jobs_now_and_then(conn: redis.Redis, queues: Sequence[Queue]) -> None:
    """move_due_jobs at most once every MOVE_EVERY_S in this process (what a worker's dequeue loop calls)."""
    global _last_move
    if time.monotonic() - _last_move < MOVE_EVERY_S:
        return
    _last_move = time.monotonic()
    move_due_jobs(conn, queues)
