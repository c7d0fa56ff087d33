"""Frappe's job look-ups (`frappe.utils.background_jobs`): is_job_enqueued, get_job_status, get_jobs.

Job ids are the caller's own `job_id`s, namespaced by site as in Frappe: the same id in two sites names two
jobs, and a look-up sees only the site it is made for (`site=`, else the current site context).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from ..core.config import SiteSettings, load_bench_settings, load_site_settings
from ..core.connection import connect
from ..core.context import active_bench, current_context
from ..core.keys import job_id_for
from .enqueue import settings_for_site
from .listings import JobSummary, orphans_among, payload_of, pending_jobs
from .rq_job import BenchJob
from .scan import fetch_jobs

# What a deduplicated enqueue waits for (queues.DEDUP_ENQUEUE_LUA); a started job counts while its worker lives.
_WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def _fetch(job_id: str, site: str | None) -> tuple[Job | None, SiteSettings]:
    settings = settings_for_site(site)
    conn = connect(settings.bench)
    (job,) = BenchJob.fetch_many(
        [job_id_for(settings.bench.bench_id, settings.name, job_id)], connection=conn, serializer=JSONSerializer
    )
    return job, settings


def get_job_status(job_id: str, site: str | None = None) -> JobStatus | None:
    """RQ's status of the site's job `job_id` (the id given to enqueue), None when Redis no longer has it
    (finished and failed jobs expire after job_result_ttl / job_failure_ttl). As Frappe's, a JobStatus,
    which compares equal to its name: `get_job_status("x") == "queued"`."""
    job, _ = _fetch(job_id, site)
    return None if job is None else job.get_status(refresh=False)


def is_job_enqueued(job_id: str, site: str | None = None) -> bool:
    """True while the site's job `job_id` is waiting (queued, or scheduled: a retry or a delayed job) or running
    on a live worker: exactly when `enqueue(..., job_id=job_id, deduplicate=True)` would skip it. Frappe counts any
    started job; a started job whose worker died is not running, and deduplicate would queue it again."""
    job, settings = _fetch(job_id, site)
    if job is None:
        return False
    status = job.get_status(refresh=False)
    if status in _WAITING:
        return True
    if status == JobStatus.STARTED:
        return job.id not in orphans_among(connect(settings.bench), settings.bench, [job])
    return False


def get_jobs(
    site: str | None = None, queue: str | Sequence[str] | None = None, key: str = "method"
) -> defaultdict[str, list[Any]]:
    """Frappe's `get_jobs`: {site: [the `key` of each of its queued or running jobs]}, running ones first,
    for one site or (site=None) every site of the bench, in `queue` (a name or a list) or every queue.
    `key` is "method" (the dotted path), "job_name" (the method when none was given, as in Frappe),
    "event", or the name of a keyword argument (jobs without it are left out). A defaultdict, so
    `get_jobs(site=s)[s]` is [] when the site has none."""
    context = current_context()
    bench = context.bench if context else active_bench()
    settings = load_site_settings(bench, site).bench if site is not None else load_bench_settings(bench)
    queues = [queue] if isinstance(queue, str) else queue
    conn = connect(settings)
    running = [
        job
        for job in pending_jobs(conn, settings, None if site is None else [site], queues, limit=None)
        if job.status in ("queued", "started")
    ]
    found: defaultdict[str, list[Any]] = defaultdict(list)
    if key in _SUMMARY_KEYS:
        for summary in running:
            if summary.site:
                found[summary.site].append(_SUMMARY_KEYS[key](summary))
        return found
    for job in fetch_jobs(conn, [summary.id for summary in running]):
        payload = payload_of(job) if job is not None else {}
        arguments = payload.get("kwargs") or {}
        if payload.get("site") and key in arguments:
            found[payload["site"]].append(arguments[key])
    return found


_SUMMARY_KEYS: dict[str, Callable[[JobSummary], Any]] = {
    "method": lambda job: job.method,
    "job_name": lambda job: job.job_name or job.method,
    "event": lambda job: job.event,
    "site": lambda job: job.site,
}
