"""Read models of a bench's queues and jobs: counts per queue, a site's pending and failed jobs, one job's
detail. Reads only: unlike `rq info`, nothing here cleans a registry or changes a job.

Big queues are read in pages of PAGE_SIZE ids; ids are filtered by their site prefix before any job hash is
fetched, and a `limit` stops the scan early.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, cast

import redis
from rq import Worker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from ..core.config import BenchSettings
from ..core.keys import Keys, bench_job_prefix, owner_of_job_id, queue_of, site_job_prefix
from ..errors import BenchJobsError, ConfigError
from .liveness import live_workers, orphaned
from .queues import queue_order, rq_queue

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
DEFAULT_LIMIT = 100

Status = Literal["queued", "started", "orphaned", "scheduled", "deferred", "failed"]


@dataclass(frozen=True)
class QueueStats:
    """Counts of one queue; `workers` are the live workers serving it."""

    name: str
    rq_name: str
    queued: int
    started: int
    orphaned: int
    failed: int
    finished: int
    scheduled: int
    deferred: int
    workers: tuple[str, ...]


@dataclass(frozen=True)
class JobSummary:
    """One job as the listings show it; `status` is "orphaned" for a started job whose worker is dead."""

    id: str
    site: str | None
    queue: str
    method: str | None
    job_name: str | None
    event: str | None
    status: str
    enqueued_at: datetime | None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    scheduled_for: datetime | None = None
    error: str | None = None  # the last line of the failure, for failed jobs


@dataclass(frozen=True)
class JobDetail:
    """One job in full: its summary, arguments, retry state and the traceback of its latest failure."""

    summary: JobSummary
    kwargs: dict[str, Any]
    timeout_s: int | None
    retries_left: int | None
    traceback: str | None


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


def check_job_of(bench_id: str, sites: Collection[str], job_id: str) -> None:
    """ConfigError unless `job_id` is a job id of one of `sites` of bench `bench_id` (an id names its bench and
    site), so a command given an id never reads or changes another bench's or site's job."""
    owner = owner_of_job_id(job_id)
    if owner is not None and owner[0] == bench_id and owner[1] in sites:
        return
    hint = "Pass --site with the job's site; show-failed-jobs lists the ids."
    whose = f" (it belongs to {owner[1]})" if owner else ""
    if owner is not None and owner[0] != bench_id:
        whose = f" (it belongs to site {owner[1]} of bench {owner[0]}, not of bench {bench_id})"
        hint = "Run the command in the job's bench (--bench PATH)."
    raise ConfigError(f"Job {job_id!r} is not a job of {', '.join(sites)}{whose}.", hint=hint)


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
    script = conn.register_script(_LIST_IDS_LUA)
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
    if not data:
        return None
    job = Job(job_id, connection=conn, serializer=JSONSerializer)
    try:
        job.restore(data)
    except Exception:
        return Job(job_id, connection=conn, serializer=JSONSerializer)
    return job


def payload_of(job: Job) -> dict[str, Any]:
    """The bench-jobs payload `{site, method, kwargs, job_name, event, doc?}` of a job ({} when unreadable)."""
    try:
        kwargs = job.kwargs
    except Exception:  # a foreign or corrupt payload must not break a listing; it shows as unknown
        return {}
    return kwargs if isinstance(kwargs, dict) else {}


def summarize(
    job: Job, status: str, orphans: Collection[str] = (), score: float | None = None, error: str | None = None
) -> JobSummary:
    """The summary of a fetched job found in a source of `status` (a started job among `orphans`, see
    orphans_among, is orphaned; a scheduled job's `score` is when it becomes due)."""
    payload = payload_of(job)
    if status == "started" and job.id in orphans:
        status = "orphaned"
    owner = owner_of_job_id(job.id)
    return JobSummary(
        id=job.id,
        site=payload.get("site") or (owner[1] if owner else None),
        queue=queue_of(job.origin),
        method=payload.get("method"),
        job_name=payload.get("job_name"),
        event=payload.get("event"),
        status=status,
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        worker=job.worker_name,
        scheduled_for=_from_epoch(score) if status == "scheduled" else None,
        error=error,
    )


def orphans_among(conn: redis.Redis, settings: BenchSettings, started: Sequence[Job]) -> set[str]:
    """The ids of the started jobs whose worker is dead (liveness.py), in at most two round trips."""
    alive = live_workers(conn, Keys(settings.bench_id), [job.worker_name for job in started if job.worker_name])
    return orphaned(conn, {job.id: job.started_at for job in started if job.worker_name not in alive})


def _from_epoch(score: float | None) -> datetime | None:
    return None if score is None else datetime.fromtimestamp(score, timezone.utc)


def queue_stats(conn: redis.Redis, settings: BenchSettings, now: datetime) -> list[QueueStats]:
    """Counts for every queue of the bench, in serving order, in three round trips. Finished and failed
    entries that expired before `now` (which RQ removes only on its next cleanup) are not counted."""
    queues = [rq_queue(conn, settings, name) for name in queue_order(settings)]
    now_s = now.timestamp()
    with conn.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.llen(q.key)
            pipe.zrange(q.started_job_registry.key, 0, -1)
            for registry_key in (q.failed_job_registry.key, q.finished_job_registry.key):
                pipe.zcard(registry_key)
                pipe.zcount(registry_key, 0, now_s)  # scores in [0, now] expired; -1 means kept forever
            pipe.zcard(q.scheduled_job_registry.key)
            pipe.zcard(q.deferred_job_registry.key)
            pipe.smembers(WORKERS_BY_QUEUE_KEY % q.name)
        replies = pipe.execute()
    per_queue = [replies[index : index + _STATS_PER_QUEUE] for index in range(0, len(replies), _STATS_PER_QUEUE)]
    started = [sorted({parse_composite_key(member.decode())[0] for member in reply[1]}) for reply in per_queue]
    workers = [sorted(_worker_name(key) for key in reply[-1]) for reply in per_queue]
    running_on = _workers_of(conn, [job_id for ids in started for job_id in ids])
    alive = live_workers(
        conn, Keys(settings.bench_id), [*(w for w, _ in running_on.values()), *(n for names in workers for n in names)]
    )
    orphans = orphaned(conn, {job_id: at for job_id, (worker, at) in running_on.items() if worker not in alive})
    stats = []
    for q, reply, job_ids, names in zip(queues, per_queue, started, workers, strict=True):
        queued, _, failed, failed_expired, finished, finished_expired, scheduled, deferred, _ = reply
        stats.append(
            QueueStats(
                name=queue_of(q.name),
                rq_name=q.name,
                queued=queued,
                started=len(job_ids),
                orphaned=sum(1 for job_id in job_ids if job_id in orphans or job_id not in running_on),
                failed=failed - failed_expired,
                finished=finished - finished_expired,
                scheduled=scheduled,
                deferred=deferred,
                workers=tuple(name for name in names if name in alive),
            )
        )
    return stats


_STATS_PER_QUEUE = 9  # replies queue_stats reads per queue


def _worker_name(worker_key: bytes) -> str:
    return worker_key.decode().removeprefix(Worker.redis_worker_namespace_prefix)


def _workers_of(conn: redis.Redis, job_ids: Sequence[str]) -> dict[str, tuple[str, bytes | None]]:
    """job id -> the worker running it and when it started, for started jobs (one round trip)."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(Job.key_for(job_id), ["worker_name", "started_at"])
        fields = pipe.execute()
    return {job_id: (name.decode(), at) for job_id, (name, at) in zip(job_ids, fields, strict=True) if name}


def pending_jobs(
    conn: redis.Redis,
    settings: BenchSettings,
    sites: Collection[str] | None,
    queues: Sequence[str] | None = None,
    limit: int | None = DEFAULT_LIMIT,
) -> list[JobSummary]:
    """The pending jobs of `sites` (None: of every site), queue by queue in serving order: running (or
    orphaned), queued in the order they will run, scheduled retries, deferred; at most `limit`."""
    prefixes = site_prefixes(settings.bench_id, sites)
    found: list[JobSummary] = []
    for queue in selected_queues(settings, queues):
        for source in pending_sources(conn, settings, queue):
            for page in scan_ids(conn, source, prefixes):
                wanted = page if limit is None else page[: limit - len(found)]
                jobs = fetch_jobs(conn, [job_id for job_id, _ in wanted])
                present = [job for job in jobs if job is not None]
                orphans = orphans_among(conn, settings, present) if source.kind == "started" else set()
                for job, (_, score) in zip(jobs, wanted, strict=True):
                    if job is not None:
                        found.append(summarize(job, source.status, orphans, score))
                if limit is not None and len(found) >= limit:
                    return found
    return found


def failed_jobs(
    conn: redis.Redis,
    settings: BenchSettings,
    sites: Collection[str] | None,
    queues: Sequence[str] | None = None,
    limit: int | None = DEFAULT_LIMIT,
    foreign: bool = False,
) -> list[JobSummary]:
    """The failed jobs of `sites`, newest failure first, each with the last line of its error; with `foreign`
    (every site is selected) also the failed jobs in the bench's queues that no site of it made, which
    show-queue counts too: one view of a queue's failed jobs everywhere."""
    prefixes = ("",) if foreign else site_prefixes(settings.bench_id, sites)
    found: list[JobSummary] = []
    for queue in selected_queues(settings, queues):
        taken = 0
        # Scores are failure time + the failure TTL, so the newest failures come first in every queue.
        for page in scan_ids(conn, failed_source(conn, settings, queue), prefixes, newest_first=True):
            wanted = page if limit is None else page[: limit - taken]
            jobs = [job for job in fetch_jobs(conn, [job_id for job_id, _ in wanted]) if job is not None]
            tracebacks = latest_failures(conn, [job.id for job in jobs])
            for job in jobs:
                found.append(summarize(job, "failed", error=last_line(tracebacks.get(job.id))))
            taken += len(jobs)
            if limit is not None and taken >= limit:
                break
    epoch = datetime.min.replace(tzinfo=timezone.utc)  # RQ's timestamps are aware (UTC)
    found.sort(key=lambda summary: summary.ended_at or epoch, reverse=True)
    return found if limit is None else found[:limit]


def latest_failures(conn: redis.Redis, job_ids: Sequence[str]) -> dict[str, str]:
    """job id -> the traceback of its latest result, for jobs whose latest result is a failure."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.xrevrange(results_key(job_id), "+", "-", count=1)
        replies = pipe.execute()
    tracebacks = {}
    for job_id, reply in zip(job_ids, replies, strict=True):
        if not reply:
            continue
        result_id, fields = reply[0]
        result = Result.restore(job_id, result_id.decode(), fields, connection=conn, serializer=JSONSerializer)
        if result.type == Result.Type.FAILED and result.exc_string:
            tracebacks[job_id] = result.exc_string
    return tracebacks


def results_key(job_id: str) -> str:
    """RQ's stream of a job's results (RQ's `Result.get_key`, which is untyped)."""
    return cast(str, Result.get_key(job_id))  # type: ignore[no-untyped-call]


def last_line(text: str | None) -> str | None:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def job_detail(conn: redis.Redis, settings: BenchSettings, job_id: str) -> JobDetail:
    """One job of the bench in full; BenchJobsError when Redis no longer holds it."""
    (job,) = Job.fetch_many([job_id], connection=conn, serializer=JSONSerializer)
    if job is None:
        raise BenchJobsError(
            f"No job {job_id!r} in Redis.",
            hint="Finished and failed jobs expire (job_result_ttl, job_failure_ttl); "
            "list the current ones with show-failed-jobs or show-pending-jobs.",
        )
    status = job.get_status(refresh=False).value
    traceback = latest_failures(conn, [job.id]).get(job.id)
    score = None
    if status == "scheduled":
        registry = ScheduledJobRegistry(job.origin, connection=conn)  # type: ignore[no-untyped-call]
        score = conn.zscore(registry.key, job.id)
    orphans = orphans_among(conn, settings, [job]) if status == "started" else set()
    summary = summarize(job, status, orphans, score, last_line(traceback))
    payload = payload_of(job)
    return JobDetail(
        summary=summary,
        kwargs=dict(payload.get("kwargs") or {}),
        timeout_s=int(job.timeout) if job.timeout is not None else None,
        retries_left=job.retries_left,
        traceback=traceback,
    )
