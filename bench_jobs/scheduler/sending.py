"""Queueing claimed runs exactly once. A fired slot's claim leaves an in-flight mark; whoever removes the
mark queues the run in the same atomic step, so a scheduler that stalled after claiming and one that
recovered its claim meanwhile can never both queue it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq import Queue
from rq.job import Job

from ..core.keys import Keys
from ..core.replication import check_wait, queue_wait
from ..jobs.fair import FAIR_LUA
from ..jobs.push import queued_job_fields

RECOVER_AFTER_TICKS = 2
RECOVER_AFTER_MIN_S = 30  # a claim not queued this long after it was made is queued by the next leader

# Queue one claimed run, only if this caller removed its in-flight mark (HDEL returned 1): at most one
# sender ever pushes a claimed run, be it the scheduler that claimed it or one that recovered the claim.
# Presence of the mark is the proof that nobody queued the run yet, so recovery needs no look at the job
# hash (gone at once when result_ttl is 0) or the queue list (a scan). The EXISTS check only covers marks
# left by a scheduler of an older version, which queued before removing its mark.
# KEYS: in-flight hash, job hash, queue list, RQ's set of queues. ARGV: job id, queue key, job hash fields.
# Returns 1 when the run was queued, else 0.
SEND_CLAIMED_LUA = (
    FAIR_LUA
    + """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
fair_push(KEYS[3], ARGV[1], false)
redis.call('SADD', KEYS[4], ARGV[2])
return 1
"""
)


@dataclass(frozen=True)
class ClaimedRun:
    """A built RQ job for a claimed slot, not yet queued."""

    queue: Queue
    job: Job


@dataclass(frozen=True)
class StaleClaim:
    """An in-flight mark older than any tick still running: its scheduler died or stalled before sending."""

    job_id: str
    site: str
    key: str
    slot_s: int


class ClaimedRunSender:
    """Sends claimed runs and finds the claims nobody sent."""

    def __init__(self, conn: redis.Redis, keys: Keys) -> None:
        self.conn = conn
        self.keys = keys
        self._script = conn.register_script(SEND_CLAIMED_LUA)

    def send(self, runs: Sequence[ClaimedRun]) -> list[bool]:
        """Queue each run whose in-flight mark is still there (one pipeline); True per run this call queued."""
        if not runs:
            return []
        with self.conn.pipeline(transaction=False) as pipe:
            for run in runs:
                job, queue = run.job, run.queue
                fields = queued_job_fields(job, queue)
                keys = [self.keys.in_flight, job.key, queue.key, queue.redis_queues_keys]
                self._script(keys=keys, args=[job.id, queue.key, *fields], client=pipe)
            waits = queue_wait(self.conn, pipe)
            replies = pipe.execute()
        if waits:
            check_wait(self.conn, replies.pop(), f"Claimed run {', '.join(run.job.id for run in runs)}")
        return [bool(reply) for reply in replies]

    def stale(self, now: datetime, tick_interval_s: int) -> list[StaleClaim]:
        """In-flight marks older than the recovery limit (one HGETALL)."""
        raw: dict[bytes, bytes] = self.conn.hgetall(self.keys.in_flight)  # type: ignore[assignment]
        cutoff_s = now.timestamp() - max(RECOVER_AFTER_TICKS * tick_interval_s, RECOVER_AFTER_MIN_S)
        found = []
        for job_id, value in raw.items():
            try:
                mark = json.loads(value)
                if mark["at"] < cutoff_s:
                    found.append(StaleClaim(job_id.decode(), mark["site"], mark["key"], int(mark["slot"])))
            except (ValueError, KeyError, TypeError):
                found.append(StaleClaim(job_id.decode(), "", "", 0))  # unreadable: no site, so it is dropped
        return found

    def drop(self, pipe: Any, job_ids: Sequence[str]) -> None:
        """Queue on `pipe` the removal of in-flight marks of runs that will not be sent (job gone, build failed)."""
        if job_ids:
            pipe.hdel(self.keys.in_flight, *job_ids)
