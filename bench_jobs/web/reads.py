"""What the dashboard's pages show beyond the existing read models: the oldest queued job per queue, the
workers with their counts and what they run, the scheduler's leader and lag, and one page of a site's jobs
(or of every site's). Reads only,
in a few pipelined round trips each, so a page stays fast on a bench of 100,000 queued jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq import Worker
from rq.job import Job
from rq.utils import parse_composite_key, utcparse

from ..core.config import BenchSettings
from ..core.keys import Keys, owner_of_job_id
from ..jobs.finished import finished_jobs
from ..jobs.listings import JobSummary, failed_jobs, pending_jobs
from ..jobs.queues import rq_queue
from ..scheduler.leader import live_processes, read_heartbeat

PAGE_SIZE = 50  # jobs per page of a site's listing
FILTER_SCAN_LIMIT = 5000  # jobs read at most when filtering by method or a single status
PENDING_STATUSES = ("queued", "started", "orphaned", "scheduled", "deferred")
STATUSES = ("pending", *PENDING_STATUSES, "failed", "finished")


@dataclass(frozen=True)
class WorkerRow:
    name: str
    queues: str
    state: str
    hostname: str
    pid: str
    job_id: str | None
    site: str | None
    processed: int = 0  # jobs it finished (RQ's successful_job_count)
    failed: int = 0  # runs that failed, retried ones too (RQ's failed_job_count)
    working_s: float = 0.0  # time spent running jobs
    born: datetime | None = None


@dataclass(frozen=True)
class SchedulerState:
    leader: str | None
    last_tick: datetime | None
    tick_lag_s: float | None
    tick_interval_s: int
    processes: int


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobSummary]
    page: int
    has_next: bool
    capped: bool  # a filter looked at only the first FILTER_SCAN_LIMIT jobs


def _text(value: bytes | None) -> str:
    return value.decode(errors="replace") if value else ""


def oldest_queued(conn: redis.Redis, settings: BenchSettings, queues: Sequence[str]) -> dict[str, datetime | None]:
    """queue -> when its oldest queued job was enqueued (RQ pushes at the tail and pops at the head)."""
    with conn.pipeline(transaction=False) as pipe:
        for name in queues:
            pipe.lindex(rq_queue(conn, settings, name).key, 0)
        heads = pipe.execute()
    with conn.pipeline(transaction=False) as pipe:
        for head in heads:
            pipe.hget(Job.key_for(_text(head)), "enqueued_at")
        stamps = pipe.execute()
    oldest: dict[str, datetime | None] = {}
    for name, head, stamp in zip(queues, heads, stamps, strict=True):
        oldest[name] = datetime.fromisoformat(_text(stamp).replace("Z", "+00:00")) if head and stamp else None
    return oldest


def workers(conn: redis.Redis, settings: BenchSettings, names: Sequence[str], queues: Sequence[str]) -> list[WorkerRow]:
    """The live workers `names` with their state and the job each runs (from the started registries)."""
    running: dict[str, str] = {}
    with conn.pipeline(transaction=False) as pipe:
        for name in queues:
            pipe.zrange(rq_queue(conn, settings, name).started_job_registry.key, 0, -1)
        started = [parse_composite_key(m.decode())[0] for reply in pipe.execute() for m in reply]
    with conn.pipeline(transaction=False) as pipe:
        for job_id in started:
            pipe.hget(Job.key_for(job_id), "worker_name")
        for job_id, worker in zip(started, pipe.execute(), strict=True):
            if worker:
                running[_text(worker)] = job_id
    fields = ["queues", "state", "hostname", "pid", "successful_job_count", "failed_job_count"]
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(Worker.redis_worker_namespace_prefix + name, [*fields, "total_working_time", "birth"])
        replies = pipe.execute()
    rows = []
    for name, (queue_names, state, hostname, pid, done, failed, working, birth) in zip(names, replies, strict=True):
        current = running.get(name)
        owner = owner_of_job_id(current) if current else None
        site = owner[1] if owner else None
        rows.append(
            WorkerRow(
                name,
                _text(queue_names),
                _text(state),
                _text(hostname),
                _text(pid),
                current,
                site,
                processed=int(_number(done, int)),
                failed=int(_number(failed, int)),
                working_s=_number(working, float),
                born=_moment(birth),
            )
        )
    return rows


def _number(value: bytes | None, kind: type[int] | type[float]) -> int | float:
    """A counter of a worker's hash (0 when missing or malformed: another tool may write that hash)."""
    try:
        return kind(_text(value) or 0)
    except ValueError:
        return 0


def _moment(value: bytes | None) -> datetime | None:
    try:
        return utcparse(_text(value)) if value else None
    except ValueError:
        return None


def scheduler_state(conn: redis.Redis, settings: BenchSettings, now: datetime) -> SchedulerState:
    """The leader's last heartbeat: who, when, how late its tick was; and how many schedule processes beat."""
    keys = Keys(settings.bench_id)
    beat: dict[str, Any] = read_heartbeat(conn, keys) or {}
    at = datetime.fromisoformat(beat["at"]) if beat.get("at") else None
    return SchedulerState(
        leader=f"{beat['host']}:{beat['pid']}" if beat.get("host") else None,
        last_tick=at,
        tick_lag_s=beat.get("tick_lag_s"),
        tick_interval_s=settings.tick_interval_s,
        processes=live_processes(conn, keys, now, settings.tick_interval_s),
    )


def site_jobs(
    conn: redis.Redis,
    settings: BenchSettings,
    site: str | None,
    status: str = "pending",
    queue: str | None = None,
    method: str | None = None,
    page: int = 1,
) -> JobPage:
    """One page of the site's jobs (of every site's when `site` is None): pending ones (running first), failed
    or finished ones (newest first), narrowed to a status, a queue and a method (substring). Without a
    narrowing filter only the jobs up to this page are read; with one, at most FILTER_SCAN_LIMIT. Every site's
    failed jobs include those no site made, as the overview's counts do."""
    queues = [queue] if queue else None
    wanted = page * PAGE_SIZE + 1
    whole = ("pending", "failed", "finished")
    filtered = bool(method) or status not in whole
    limit = FILTER_SCAN_LIMIT if filtered else wanted
    sites = [site] if site else None
    if status == "failed":
        found = failed_jobs(conn, settings, sites, queues, limit, foreign=site is None)
    elif status == "finished":
        found = finished_jobs(conn, settings, sites, queues, limit)
    else:
        found = pending_jobs(conn, settings, sites, queues, limit)
    capped = filtered and len(found) >= FILTER_SCAN_LIMIT
    if status not in whole:
        found = [job for job in found if job.status == status]
    if method:
        found = [job for job in found if method in (job.method or "")]
    start = (page - 1) * PAGE_SIZE
    return JobPage(found[start : start + PAGE_SIZE], page, len(found) > start + PAGE_SIZE, capped)
