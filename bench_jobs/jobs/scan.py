"""Reading a bench's queues and registries without holding them whole: the sources a queue's jobs wait in,
pages of ids filtered by site prefix (inside Redis for queue lists), and job hashes fetched a page at a time.
Reads only."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key

from ..core.config import BenchSettings
from ..core.connection import lua
from ..core.keys import bench_job_prefix, site_job_prefix
from .queues import queue_order, rq_queue
from .rq_job import BenchJob

PAGE_SIZE = 1000  # ids per ZRANGE, and job hashes per round trip
LIST_CHUNK = 10_000  # queue entries one call of _LIST_IDS_LUA reads: ~3 ms of Redis's time

# The ids among entries [start, stop] of a queue list that start with one of the prefixes: filtered inside
# Redis, so a site's few jobs in a queue of 100,000 cost a few calls instead of 100 pages sent to Python.
# KEYS: the list. ARGV: start, stop, then the prefixes. Returns {entries read, matching ids}.
_LIST_IDS_LUA = """
local ids = redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])
local found = {}
for _, id in ipairs(ids) do
  for i = 3, #ARGV do
    if string.sub(id, 1, #ARGV[i]) == ARGV[i] then found[#found + 1] = id; break end
  end
end
return {#ids, found}
"""
Status = Literal["queued", "started", "orphaned", "scheduled", "deferred", "failed", "finished"]


@dataclass(frozen=True)
class Source:
    """Where jobs of one queue wait: its list, or one of its registries (sorted sets)."""

    queue: str
    key: str
    kind: Literal["list", "zset", "started"]
    status: Status


def site_prefixes(bench_id: str, sites: Collection[str] | None) -> tuple[str, ...]:
    """The job-id prefixes of `sites` of the bench (of all its sites when `sites` is None): the only ids a
    listing or purge of this bench looks at, whoever else pushed ids into its queues."""
    if sites is None:
        return (bench_job_prefix(bench_id),)
    return tuple(site_job_prefix(bench_id, site) for site in sites)


def selected_queues(settings: BenchSettings, queues: Sequence[str] | None) -> list[str]:
    """`queues` checked against the bench's (ConfigError listing them), else every queue in serving order."""
    for name in queues or ():
        settings.queue(name)
    return list(dict.fromkeys(queues)) if queues else queue_order(settings)


def pending_sources(conn: redis.Redis, settings: BenchSettings, queue: str) -> list[Source]:
    """A queue's pending jobs, running ones first: started, queued, scheduled (retries), deferred."""
    q = rq_queue(conn, settings, queue)
    return [
        Source(queue, q.started_job_registry.key, "started", "started"),
        Source(queue, q.key, "list", "queued"),
        Source(queue, q.scheduled_job_registry.key, "zset", "scheduled"),
        Source(queue, q.deferred_job_registry.key, "zset", "deferred"),
    ]


def failed_source(conn: redis.Redis, settings: BenchSettings, queue: str) -> Source:
    return Source(queue, rq_queue(conn, settings, queue).failed_job_registry.key, "zset", "failed")


def scan_ids(
    conn: redis.Redis, source: Source, prefixes: tuple[str, ...], newest_first: bool = False
) -> Iterator[list[tuple[str, float | None]]]:
    """Pages of (job id, score) in `source` whose id starts with one of `prefixes`.

    A page is read by index, so jobs that workers take or add meanwhile may shift a page: an id can be
    missed or seen twice (twice is filtered here). That is the price of never holding a whole queue.
    """
    if source.kind == "list":
        yield from _scan_list(conn, source.key, prefixes)
        return
    seen: set[str] = set()
    start = 0
    while True:
        stop = start + PAGE_SIZE - 1
        scored = cast(
            list[tuple[bytes, float]], conn.zrange(source.key, start, stop, desc=newest_first, withscores=True)
        )
        entries: list[tuple[str, float | None]] = [(member.decode(), score) for member, score in scored]
        if source.kind == "started":
            entries = [(parse_composite_key(member)[0], score) for member, score in entries]
        page = [(job_id, score) for job_id, score in entries if job_id.startswith(prefixes) and job_id not in seen]
        seen.update(job_id for job_id, _ in page)
        if page:
            yield page
        if len(entries) < PAGE_SIZE:
            return
        start += PAGE_SIZE


def _scan_list(conn: redis.Redis, key: str, prefixes: tuple[str, ...]) -> Iterator[list[tuple[str, float | None]]]:
    """scan_ids of a queue list: LIST_CHUNK entries per call, filtered in Redis, in pages of PAGE_SIZE ids."""
    script = lua(conn, _LIST_IDS_LUA)
    seen: set[str] = set()
    start = 0
    while True:
        read, raw = script(keys=[key], args=[start, start + LIST_CHUNK - 1, *prefixes])
        ids = [job_id for job_id in (item.decode() for item in raw) if job_id not in seen]
        seen.update(ids)
        for offset in range(0, len(ids), PAGE_SIZE):
            yield [(job_id, None) for job_id in ids[offset : offset + PAGE_SIZE]]
        if read < LIST_CHUNK:
            return
        start += LIST_CHUNK


def fetch_jobs(conn: redis.Redis, job_ids: Sequence[str]) -> list[Job | None]:
    """The jobs of `job_ids` (None where a job is gone), PAGE_SIZE hashes per round trip. A hash RQ cannot
    read (a malformed date or number, written by another tool) comes back as a bare job with only its id, so
    one such hash never breaks a listing."""
    jobs: list[Job | None] = []
    for start in range(0, len(job_ids), PAGE_SIZE):
        page = job_ids[start : start + PAGE_SIZE]
        with conn.pipeline(transaction=False) as pipe:
            for job_id in page:
                pipe.hgetall(Job.key_for(job_id))
            hashes = pipe.execute()
        jobs += [_restored(conn, job_id, data) for job_id, data in zip(page, hashes, strict=True)]
    return jobs


def _restored(conn: redis.Redis, job_id: str, data: dict[bytes, bytes]) -> Job | None:
    """A BenchJob, whose restore inflates the payload with a cap (RQ's Job has none)."""
    if not data:
        return None
    job = BenchJob(job_id, connection=conn, serializer=JSONSerializer)
    try:
        job.restore(data)
    except Exception:
        return BenchJob(job_id, connection=conn, serializer=JSONSerializer)
    return job
