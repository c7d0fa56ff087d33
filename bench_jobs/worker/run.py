"""Starting `bench-jobs worker`: the queues in serving order, the recovery a start owes to workers that died,
then one BenchWorker, or RQ's pool of them."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

from ..core.bench import Bench
from ..core.config import BenchSettings, load_bench_settings
from ..core.connection import connect_checked
from ..core.context import use_bench
from ..core.keys import Keys
from ..errors import EXIT_FAILED, ConfigError
from ..jobs.fair import reindex
from ..jobs.queues import queue_order
from ..jobs.rq_job import BenchJob
from .outage import ride_out
from .preload import preload_apps
from .recovery import recover_orphans
from .serve import BenchWorker, ForkPerJobWorker, publish_site_limits, worker_queue
from .take import WorkerQueue, recover_taken

log = logging.getLogger("rq.worker.bench_jobs")


def serving_order(settings: BenchSettings, requested: Sequence[str] | None) -> list[str]:
    """The queues to serve, in order: those given, else short, default, long, then custom ones."""
    known = queue_order(settings)
    if not requested:
        return known
    unknown = [name for name in requested if name not in settings.queues]
    if unknown:
        raise ConfigError(f"Unknown queue(s): {', '.join(unknown)}.", hint=f"Known queues: {', '.join(known)}.")
    return list(dict.fromkeys(requested))


def run_worker(
    bench: Bench,
    queues: Sequence[str] | None = None,
    burst: bool = False,
    num_workers: int = 1,
    logging_level: str = "INFO",
    fork_per_job: bool = False,
) -> int:
    """Serve the bench's queues until a warm shutdown (SIGTERM/SIGINT); returns the exit code. Each worker
    runs many jobs in one work-horse, or forks one per job with `fork_per_job` (or the bench's key)."""
    if num_workers < 1:
        raise ConfigError(f"--num-workers must be at least 1, not {num_workers}.")
    use_bench(bench)
    settings = load_bench_settings(bench)
    names = serving_order(settings, queues)
    conn = connect_checked(settings)
    for problem in preload_apps(bench):
        log.warning("preload: %s", problem)
    rq_queues = [worker_queue(conn, settings, name) for name in names]
    ride_out(functools.partial(publish_site_limits, conn, bench), "site limits")
    for queue in rq_queues:  # idempotent: retried while Redis is away or full
        ride_out(functools.partial(reindex, conn, queue), "recovery")
        ride_out(functools.partial(recover_orphans, conn, queue, Keys(settings.bench_id)), "recovery")
        ride_out(functools.partial(recover_taken, conn, queue, Keys(settings.bench_id)), "recovery")
    worker_class = ForkPerJobWorker if fork_per_job or settings.fork_per_job else BenchWorker
    if num_workers == 1:
        worker = worker_class(rq_queues, connection=conn)
        worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
        # RQ's loop ends quietly on an unhandled exception: a supervisor restarts on a non-zero code.
        return 0 if burst or worker._shutdown_requested_date is not None else EXIT_FAILED
    pool = WorkerPool(
        [q.name for q in rq_queues],
        connection=conn,
        num_workers=num_workers,
        worker_class=worker_class,
        queue_class=WorkerQueue,
        job_class=BenchJob,
        serializer=JSONSerializer,
    )
    pool.start(burst=burst, logging_level=logging_level)
    return 0
