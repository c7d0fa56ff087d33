"""Read models of a bench's queues and jobs: counts per queue, a site's pending and failed jobs, one job's
detail. Reads only: unlike `rq info`, nothing here cleans a registry or changes a job.

Big queues are read in pages of PAGE_SIZE ids; ids are filtered by their site prefix before any job hash is
fetched, and a `limit` stops the scan early.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, cast

import redis
from rq import Worker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from ..core.config import BenchSettings
from ..core.keys import Keys, owner_of_job_id, queue_of
from ..errors import BenchJobsError, ConfigError
from .brief import Brief, cut, read_briefs
from .liveness import live_workers, orphaned
from .payload import PayloadTooLarge, inflate_tail
from .queues import queue_order, rq_queue
from .rq_job import BenchJob
from .scan import (
    failed_source,
    pending_sources,
    scan_ids,
    selected_queues,
    site_prefixes,
)

DEFAULT_LIMIT = 100
ERROR_CHARS = 300  # of a failure's last line in a listing
LISTED_TRACEBACK_BYTES = 4096  # of a traceback's end read per failed job listed: enough for its last line
DETAIL_TRACEBACK_BYTES = 256 * 1024  # of a traceback's end a job's page or --job-id shows
DETAIL_CHARS = 10_000  # of a method, job name or event a job's page shows


class Running(Protocol):
    """What orphans_among needs of a started job (a Brief or an RQ Job)."""

    @property
    def id(self) -> str: ...

    @property
    def worker_name(self) -> str | None: ...

    @property
    def started_at(self) -> datetime | None: ...


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
    result: str | None = None  # the start of what it returned (JSON), for finished jobs


@dataclass(frozen=True)
class JobDetail:
    """One job in full: its summary, arguments, retry state and the traceback of its latest failure."""

    summary: JobSummary
    kwargs: dict[str, Any]
    timeout_s: int | None
    retries_left: int | None
    traceback: str | None


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


def payload_of(job: Job) -> dict[str, Any]:
    """The bench-jobs payload `{site, method, kwargs, job_name, event, doc?}` of a job ({} when unreadable)."""
    try:
        kwargs = job.kwargs
    except Exception:  # a foreign, corrupt or oversized payload must not break a listing; it shows as unknown
        return {}
    return kwargs if isinstance(kwargs, dict) else {}


def summarize(
    brief: Brief,
    status: str,
    orphans: Collection[str] = (),
    score: float | None = None,
    error: str | None = None,
    result: str | None = None,
) -> JobSummary:
    """The summary of a job read as a Brief, found in a source of `status` (a started job among `orphans`,
    see orphans_among, is orphaned; a scheduled job's `score` is when it becomes due)."""
    if status == "started" and brief.id in orphans:
        status = "orphaned"
    owner = owner_of_job_id(brief.id)
    return JobSummary(
        id=brief.id,
        site=brief.site or (owner[1] if owner else None),
        queue=queue_of(brief.origin),
        method=brief.method,
        job_name=brief.job_name,
        event=brief.event,
        status=status,
        enqueued_at=brief.enqueued_at,
        started_at=brief.started_at,
        ended_at=brief.ended_at,
        worker=brief.worker_name,
        scheduled_for=_from_epoch(score) if status == "scheduled" else None,
        error=cut(error, ERROR_CHARS),
        result=result,
    )


def orphans_among(conn: redis.Redis, settings: BenchSettings, started: Sequence[Running]) -> set[str]:
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
    orphaned), queued in the order they will run, scheduled (retries, delayed jobs), deferred; at most
    `limit`."""
    prefixes = site_prefixes(settings.bench_id, sites)
    found: list[JobSummary] = []
    for queue in selected_queues(settings, queues):
        for source in pending_sources(conn, settings, queue):
            for page in scan_ids(conn, source, prefixes):
                wanted = page if limit is None else page[: limit - len(found)]
                briefs = read_briefs(conn, [job_id for job_id, _ in wanted])
                present = [brief for brief in briefs if brief is not None]
                orphans = orphans_among(conn, settings, present) if source.kind == "started" else set()
                for brief, (_, score) in zip(briefs, wanted, strict=True):
                    if brief is not None:
                        found.append(summarize(brief, source.status, orphans, score))
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
            jobs = [brief for brief in read_briefs(conn, [job_id for job_id, _ in wanted]) if brief is not None]
            tracebacks = latest_failures(conn, [job.id for job in jobs], LISTED_TRACEBACK_BYTES)
            for job in jobs:
                found.append(summarize(job, "failed", error=last_line(tracebacks.get(job.id))))
            taken += len(jobs)
            if limit is not None and taken >= limit:
                break
    epoch = datetime.min.replace(tzinfo=timezone.utc)  # RQ's timestamps are aware (UTC)
    found.sort(key=lambda summary: summary.ended_at or epoch, reverse=True)
    return found if limit is None else found[:limit]


def latest_failures(conn: redis.Redis, job_ids: Sequence[str], keep_bytes: int) -> dict[str, str]:
    """job id -> the end (`keep_bytes` at most) of the traceback of its latest result, for jobs whose latest
    result is a failure. Read as RQ stores it (zlib, base64) but inflated with a cap (payload.py), and the
    result's return value is never decoded."""
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.xrevrange(results_key(job_id), "+", "-", count=1)
        replies = pipe.execute()
    tracebacks = {}
    for job_id, reply in zip(job_ids, replies, strict=True):
        fields = reply[0][1] if reply else {}
        if fields.get(b"type") != str(Result.Type.FAILED.value).encode() or not fields.get(b"exc_string"):
            continue
        try:
            tail, was_cut = inflate_tail(base64.b64decode(fields[b"exc_string"]), keep_bytes)
        except (ValueError, zlib.error, PayloadTooLarge):
            tracebacks[job_id] = "(its traceback in Redis cannot be read)"
            continue
        text = tail.decode(errors="replace")
        tracebacks[job_id] = f"… (the traceback's first part is cut)\n{text}" if was_cut else text
    return tracebacks


def results_key(job_id: str) -> str:
    """RQ's stream of a job's results (RQ's `Result.get_key`, which is untyped)."""
    return cast(str, Result.get_key(job_id))  # type: ignore[no-untyped-call]


def last_line(text: str | None) -> str | None:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def job_detail(conn: redis.Redis, settings: BenchSettings, job_id: str) -> JobDetail:
    """One job of the bench in full; BenchJobsError when Redis no longer holds it, or holds a hash RQ cannot
    read (a malformed date, number or status written by another tool)."""
    data = conn.hgetall(Job.key_for(job_id))
    if not data:
        raise BenchJobsError(
            f"No job {job_id!r} in Redis.",
            hint="Finished and failed jobs expire (job_result_ttl, job_failure_ttl); "
            "list the current ones with show-failed-jobs or show-pending-jobs.",
        )
    job = BenchJob(job_id, connection=conn, serializer=JSONSerializer)
    try:
        job.restore(data)
    except Exception as exc:  # RQ raises ValueError, KeyError, NoSuchJobError... for a hash it cannot read
        raise BenchJobsError(
            f"Job {job_id!r} cannot be read: its hash in Redis is malformed ({type(exc).__name__}).",
            hint="bench-jobs did not write it; delete it with purge-jobs or redis-cli DEL.",
        ) from None
    status = job.get_status(refresh=False).value
    traceback = latest_failures(conn, [job.id], DETAIL_TRACEBACK_BYTES).get(job.id)
    score = None
    if status == "scheduled":
        registry = ScheduledJobRegistry(job.origin, connection=conn)  # type: ignore[no-untyped-call]
        score = conn.zscore(registry.key, job.id)
    payload = payload_of(job)
    brief = Brief(
        job.id,
        job.origin,
        status,
        job.enqueued_at,
        job.started_at,
        job.ended_at,
        job.worker_name,
        *(cut(payload.get(name), DETAIL_CHARS) for name in ("site", "method", "job_name", "event")),
    )
    orphans = orphans_among(conn, settings, [brief]) if status == "started" else set()
    summary = summarize(brief, status, orphans, score, last_line(traceback))
    return JobDetail(
        summary=summary,
        kwargs=kwargs if isinstance(kwargs := payload.get("kwargs"), dict) else {},
        timeout_s=int(job.timeout) if job.timeout is not None else None,
        retries_left=job.retries_left,
        traceback=traceback,
    )
