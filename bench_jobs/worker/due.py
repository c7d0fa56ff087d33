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
from ..jobs.fair import FAIR_LUA

MOVE_EVERY_S = 1.0
DUE_LOOK_S = 5.0  # a retry or delayed job scheduled meanwhile by another process waits at most this long
BATCH = 500  # ids per queue per call

# A job enqueued with at_front goes to the head of its queue when it falls due, as RQ's own scheduler does.
# KEYS: pairs of (scheduled registry, queue list). ARGV: cutoff epoch s, job key prefix, batch, enqueued_at.
# Returns how many moved and the epoch (s, as a string) of the next job due after the cutoff, or ''.
MOVE_DUE_LUA = (
    FAIR_LUA
    + """
local moved = 0
local next_due = nil
for i = 1, #KEYS, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
  for _, id in ipairs(due) do
    if redis.call('ZREM', KEYS[i], id) == 1 and redis.call('EXISTS', ARGV[2] .. id) == 1 then
      redis.call('HSET', ARGV[2] .. id, 'status', 'queued', 'enqueued_at', ARGV[4])
      fair_push(KEYS[i + 1], id, redis.call('HGET', ARGV[2] .. id, 'enqueue_at_front') == '1')
      moved = moved + 1
    end
  end
  local head = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if head[2] and (next_due == nil or tonumber(head[2]) < next_due) then next_due = tonumber(head[2]) end
end
return {moved, next_due and tostring(next_due) or ''}
"""
)

_last_move = 0.0
_next_due: float | None = None


def move_due_jobs(conn: redis.Redis, queues: Sequence[Queue], now: datetime | None = None) -> int:
    """Push every job of `queues` whose scheduled time has come onto its queue; returns how many moved."""
    if not queues:
        return 0
    now = now or datetime.now(timezone.utc)
    return _move_due(conn, queues, now)[0]


def _move_due(conn: redis.Redis, queues: Sequence[Queue], now: datetime) -> tuple[int, float | None]:
    """move_due_jobs, and the epoch (s) of the next job due after `now` (None when none is scheduled)."""
    keys: list[str] = []
    for queue in queues:
        keys += [queue.scheduled_job_registry.key, queue.key]
    # The cutoff keeps its fraction: a delayed job's score is its exact time (RQ's retries have whole seconds).
    args: list[str | int] = [repr(now.timestamp()), Job.redis_job_namespace_prefix, BATCH, utcformat(now)]
    moved, next_due = lua(conn, MOVE_DUE_LUA)(keys=keys, args=args)
    return int(moved), float(next_due) if next_due else None


def move_due_jobs_now_and_then(conn: redis.Redis, queues: Sequence[Queue], now: bool = False) -> float:
    """move_due_jobs at most once every MOVE_EVERY_S in this process (what a worker's dequeue loop calls), and
    whenever `now` or the next due job's time has come; returns how long until that time, at most DUE_LOOK_S."""
    global _last_move, _next_due
    clock_s = time.time()
    if now or (_next_due is not None and clock_s >= _next_due) or time.monotonic() - _last_move >= MOVE_EVERY_S:
        _last_move = time.monotonic()
        _next_due = _move_due(conn, queues, datetime.fromtimestamp(clock_s, timezone.utc))[1]
    if _next_due is None:
        return DUE_LOOK_S
    return min(DUE_LOOK_S, max(0.0, _next_due - time.time()))
