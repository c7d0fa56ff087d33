"""Changing a site's jobs: purge its pending or failed ones, requeue its failed ones.

Only jobs whose id carries one of the chosen sites' prefixes are ever touched. Work is planned first (ids
only, read page by page) so the CLI can show the count and ask before anything is deleted; deletion then
runs in batches, each atomic in Redis and counting only what it really removed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import redis
from rq.executions import ExecutionRegistry
from rq.job import Job

from ..core.config import BenchSettings
from ..core.connection import lua
from ..core.hooks import KNOWN_EVENTS
from ..core.keys import queue_of
from ..errors import BenchJobsError, ConfigError
from .brief import read_briefs
from .fair import FAIR_LUA
from .listings import check_job_of, results_key
from .queues import rq_queue
from .scan import (
    PAGE_SIZE,
    Source,
    failed_source,
    fetch_jobs,
    pending_sources,
    scan_ids,
    selected_queues,
    site_prefixes,
)

Progress = Callable[[int], None]  # called with how many jobs a finished batch covered

# Never a job id: RQ ids are [A-Za-z0-9_-]+.
_TOMBSTONE = "bench-jobs:purged"

# Remove the given ids from a queue list, deleting each removed job's keys. Atomic, so a job a worker has
# already popped is not in the list any more and is left alone. Found entries become a tombstone (LSET
# keeps later indexes valid while the list is read in pages), then LREM drops the tombstones.
# KEYS: the queue list. ARGV: job, results and executions key prefixes, tombstone, then the job ids.
_PURGE_LIST_LUA = (
    FAIR_LUA
    + """
local wanted, left = {}, 0
for i = 5, #ARGV do
  if not wanted[ARGV[i]] then wanted[ARGV[i]] = true; left = left + 1 end
end
local removed, start, page = 0, 0, 1000
while left > 0 do
  local ids = redis.call('LRANGE', KEYS[1], start, start + page - 1)
  for offset, id in ipairs(ids) do
    if wanted[id] then
      wanted[id] = nil
      left = left - 1
      removed = removed + 1
      redis.call('LSET', KEYS[1], start + offset - 1, ARGV[4])
      fair_remove(KEYS[1], id)
      local job = ARGV[1] .. id
      redis.call('DEL', job, job .. ':dependents', job .. ':dependencies', ARGV[2] .. id, ARGV[3] .. id)
    end
  end
  if #ids < page then break end
  start = start + page
end
if removed > 0 then redis.call('LREM', KEYS[1], removed, ARGV[4]) end
return removed
"""
)

# Remove the given ids from a registry (sorted set), deleting the keys of each job really removed.
# KEYS: the registry. ARGV: job, results and executions key prefixes, then the job ids.
_PURGE_ZSET_LUA = """
local removed = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[1], id) == 1 then
    removed = removed + 1
    local job = ARGV[1] .. id
    redis.call('DEL', job, job .. ':dependents', job .. ':dependencies', ARGV[2] .. id, ARGV[3] .. id)
  end
end
return removed
"""


@dataclass(frozen=True)
class Batch:
    source: Source
    job_ids: tuple[str, ...]


@dataclass
class PurgePlan:
    """The jobs a purge would delete, in batches of at most PAGE_SIZE ids of one source."""

    batches: list[Batch] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(batch.job_ids) for batch in self.batches)


def check_event(event: str | None) -> None:
    """ConfigError listing the scheduler events when `event` is not one of them."""
    if event is not None and event not in KNOWN_EVENTS:
        raise ConfigError(f"Unknown event {event!r}.", hint=f"Events: {', '.join(KNOWN_EVENTS)}.")


def plan_purge(
    conn: redis.Redis,
    settings: BenchSettings,
    sites: Collection[str],
    queues: Sequence[str] | None = None,
    event: str | None = None,
    failed: bool = False,
    foreign: bool = False,
) -> PurgePlan:
    """The queued, scheduled and deferred jobs of `sites` (or with `failed`, their failed jobs) in `queues`,
    only those of scheduler `event` when given. Running jobs are never purged: a worker holds them. With
    `failed` and `foreign` (every site is selected), also the failed jobs in the bench's queues that no site
    made (show-queue and doctor count them): a failed job runs nothing, so removing it is safe."""
    check_event(event)
    prefixes = ("",) if failed and foreign and event is None else site_prefixes(settings.bench_id, sites)
    plan = PurgePlan()
    for queue in selected_queues(settings, queues):
        if failed:
            sources = [failed_source(conn, settings, queue)]
        else:
            sources = [s for s in pending_sources(conn, settings, queue) if s.kind != "started"]
        for source in sources:
            for page in scan_ids(conn, source, prefixes):
                job_ids = [job_id for job_id, _ in page]
                if event is not None:
                    job_ids = _of_event(conn, job_ids, event)
                if job_ids:
                    plan.batches.append(Batch(source, tuple(job_ids)))
    return plan


def _of_event(conn: redis.Redis, job_ids: Sequence[str], event: str) -> list[str]:
    """The jobs of `job_ids` fired by `event`, read from their brief fields, never their payloads."""
    return [brief.id for brief in read_briefs(conn, job_ids) if brief is not None and brief.event == event]


def purge(conn: redis.Redis, plan: PurgePlan, on_progress: Progress | None = None) -> int:
    """Delete the planned jobs; returns how many were deleted (a job taken by a worker meanwhile is kept)."""
    list_script = lua(conn, _PURGE_LIST_LUA)
    zset_script = lua(conn, _PURGE_ZSET_LUA)
    prefixes = [Job.redis_job_namespace_prefix, results_key(""), ExecutionRegistry.key_template.format("")]
    deleted = 0
    for batch in plan.batches:
        if batch.source.kind == "list":
            removed = list_script(keys=[batch.source.key], args=[*prefixes, _TOMBSTONE, *batch.job_ids])
        else:
            removed = zset_script(keys=[batch.source.key], args=[*prefixes, *batch.job_ids])
        deleted += int(removed)
        if on_progress is not None:
            on_progress(len(batch.job_ids))
    return deleted


def failed_job_ids(
    conn: redis.Redis,
    settings: BenchSettings,
    sites: Collection[str],
    queues: Sequence[str] | None = None,
    job_id: str | None = None,
) -> dict[str, list[str]]:
    """queue -> ids of the failed jobs of `sites` to requeue (only `job_id` when given, which must be a
    failed job of one of `sites`)."""
    if job_id is None:
        prefixes = site_prefixes(settings.bench_id, sites)
        return {
            queue: [
                found for page in scan_ids(conn, failed_source(conn, settings, queue), prefixes) for found, _ in page
            ]
            for queue in selected_queues(settings, queues)
        }
    check_job_of(settings.bench_id, sites, job_id)
    (job,) = fetch_jobs(conn, [job_id])
    queue = queue_of(job.origin) if job is not None else None
    if job is None or queue is None or conn.zscore(failed_source(conn, settings, queue).key, job_id) is None:
        raise BenchJobsError(f"Job {job_id!r} is not a failed job.", hint="show-failed-jobs lists the failed jobs.")
    if queues and queue not in queues:
        raise ConfigError(f"Job {job_id!r} failed on queue {queue!r}, not on {', '.join(queues)}.")
    return {queue: [job_id]}


def requeue_failed(
    conn: redis.Redis,
    settings: BenchSettings,
    job_ids_by_queue: dict[str, list[str]],
    on_progress: Progress | None = None,
) -> int:
    """Put failed jobs back at the end of their queues; returns how many (a job requeued or deleted by
    someone else meanwhile is skipped)."""
    requeued = 0
    for queue, job_ids in job_ids_by_queue.items():
        for start in range(0, len(job_ids), PAGE_SIZE):
            batch = job_ids[start : start + PAGE_SIZE]
            requeued += _requeue_batch(conn, settings, queue, batch)
            if on_progress is not None:
                on_progress(len(batch))
    return requeued


def _requeue_batch(conn: redis.Redis, settings: BenchSettings, queue: str, job_ids: Sequence[str]) -> int:
    rq_q = rq_queue(conn, settings, queue)
    registry_key = rq_q.failed_job_registry.key
    jobs = [job for job in fetch_jobs(conn, job_ids) if job is not None]
    # Claim each job by removing it from the failed registry first, as RQ's requeue does: of two
    # concurrent requeues only the one whose ZREM succeeded enqueues the job.
    with conn.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.zrem(registry_key, job.id)
        claimed = [job for job, removed in zip(jobs, pipe.execute(), strict=True) if removed]
    with conn.pipeline() as pipe:
        for job in claimed:
            job.started_at = None
            job.ended_at = None
            rq_q.enqueue_job(job, pipeline=pipe)
        pipe.execute()
    return len(claimed)
