"""The dashboard's actions that no command has in this shape: deleting one job of a site."""

from __future__ import annotations

import redis
from rq.serializers import JSONSerializer

from ..core.config import BenchSettings
from ..core.keys import queue_of
from ..errors import BenchJobsError
from ..jobs.listings import check_job_of
from ..jobs.purge import Batch, PurgePlan, purge
from ..jobs.rq_job import BenchJob
from ..jobs.scan import Source, failed_source, pending_sources


def delete_job(conn: redis.Redis, settings: BenchSettings, site: str, job_id: str) -> int:
    """Delete one queued, scheduled, deferred or failed job of `site` with purge's atomic scripts; returns 1,
    or 0 when a worker took it meanwhile. A running job is refused: its worker holds it."""
    check_job_of(settings.bench_id, [site], job_id)
    (job,) = BenchJob.fetch_many([job_id], connection=conn, serializer=JSONSerializer)
    if job is None:
        raise BenchJobsError(f"No job {job_id!r} in Redis.", hint="It finished, expired or was deleted.")
    status = job.get_status(refresh=False).value
    queue = queue_of(job.origin)
    sources: list[Source] = [failed_source(conn, settings, queue), *pending_sources(conn, settings, queue)]
    source = next((s for s in sources if s.status == status and s.kind != "started"), None)
    if source is None:
        raise BenchJobsError(
            f"Job {job_id!r} is {status}: only queued, scheduled, deferred and failed jobs can be deleted.",
            hint="A running job ends by itself or at its timeout.",
        )
    return purge(conn, PurgePlan([Batch(source, (job_id,))]))
