"""`bench-jobs worker`: RQ workers over a bench's queues, forking each job from a parent that has
already imported every app, with a short-lived liveness key so a dead worker never blocks a job."""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import time
from collections.abc import Sequence
from typing import Any

from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

from ..core.bench import Bench
from ..core.config import BenchSettings, load_bench_settings, load_site_settings
from ..core.connection import connect_checked
from ..core.context import active_bench, use_bench
from ..core.hooks import load_site_hooks
from ..core.keys import JOB_FUNCTION, Keys, bench_id_of
from ..errors import BenchJobsError, ConfigError
from .liveness import RESTART_GRACE_S, alive_value
from .outage import BACKOFF_MAX_S, REDIS_DOWN, BenchScheduler, OutageTolerantWorker
from .queues import BenchQueue, queue_order, rq_queue
from .recovery import recover_orphans
from .rq_job import BenchJob

ALIVE_TTL_S = 15  # a worker that missed this long is dead; heartbeats come at least every JOB_MONITORING_S
JOB_MONITORING_S = 5
WORKER_TTL_S = 20  # RQ blocks on the queues for WORKER_TTL_S - 15 s between heartbeats
MAINTENANCE_INTERVAL_S = 60
assert ALIVE_TTL_S + BACKOFF_MAX_S + JOB_MONITORING_S <= RESTART_GRACE_S, "re-marked within the grace"

# A child of RQ's worker logger: our lines share its handler, format and level.
log = logging.getLogger("rq.worker.bench_jobs")


class BenchWorker(OutageTolerantWorker):
    """An RQ worker with JSON payloads that also keeps `bench_jobs:<bench>:alive:<name>` fresh."""

    def __init__(self, queues: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs["job_class"] = BenchJob  # always: RQ's WorkerPool passes job_class=Job explicitly
        # Always too: the queue a job was taken from is rebuilt with this class, and its dependents methods
        # are what a finished or failed job's horse calls (BenchQueue has none to enqueue).
        kwargs["queue_class"] = BenchQueue
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_S)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_S)
        # How long a finished job is kept is the worker's setting (job_result_ttl), not written into every job.
        kwargs.setdefault("default_result_ttl", load_bench_settings(active_bench()).result_ttl_s)
        super().__init__(queues, *args, **kwargs)
        first = self.queues[0].name
        self.bench_keys = Keys(bench_id_of(first))

    def _mark_alive(self, pipeline: Any = None) -> None:
        target = pipeline if pipeline is not None else self.connection
        target.set(self.bench_keys.worker_alive(self.name), alive_value(self.pid or os.getpid()), ex=ALIVE_TTL_S)

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO", *args: Any) -> None:
        """RQ's own, with BenchScheduler: retries and delayed jobs are moved to their queues on time."""
        self.scheduler = BenchScheduler(
            self.queues, connection=self.connection, logging_level=logging_level or "INFO", serializer=self.serializer
        )
        self.scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if not self.scheduler.acquired_locks:
            return  # another worker's scheduler has these queues; maintenance takes over if it dies
        if not burst:
            self.scheduler.start()  # type: ignore[no-untyped-call]
            return
        try:
            self.scheduler.register_birth()  # type: ignore[no-untyped-call]
            self.scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        finally:
            self.scheduler.release_locks()  # type: ignore[no-untyped-call]
            self.scheduler.register_death()  # type: ignore[no-untyped-call]

    def register_birth(self) -> None:
        super().register_birth()  # type: ignore[no-untyped-call]
        self._mark_alive()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            self._mark_alive(pipeline)
            return
        try:
            with self.connection.pipeline() as pipe:  # RQ's three commands and ours in one round trip
                super().heartbeat(timeout, pipe)
                self._mark_alive(pipe)
                pipe.execute()
        except REDIS_DOWN as exc:
            self._redis_lost(exc)  # the next step that needs Redis waits for it
            return
        self._redis_back()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline)
            return
        try:
            super().set_state(state)
        except REDIS_DOWN as exc:
            self._redis_lost(exc)  # RQ keeps the state in memory too; the next heartbeat is what counts

    def register_death(self) -> None:
        self.connection.delete(self.bench_keys.worker_alive(self.name))
        super().register_death()  # type: ignore[no-untyped-call]

    def clean_registries(self) -> None:
        # A worker that was cut off from Redis itself waits out the grace too: so may the others have been.
        if time.monotonic() - self._redis_back_at >= RESTART_GRACE_S:
            for queue in self.queues:
                recover_orphans(self.connection, queue, self.bench_keys)
        super().clean_registries()  # type: ignore[no-untyped-call]


def serving_order(settings: BenchSettings, requested: Sequence[str] | None) -> list[str]:
    """The queues to serve, in order: those given, else short, default, long, then custom ones."""
    known = queue_order(settings)
    if not requested:
        return known
    unknown = [name for name in requested if name not in settings.queues]
    if unknown:
        raise ConfigError(f"Unknown queue(s): {', '.join(unknown)}.", hint=f"Known queues: {', '.join(known)}.")
    return list(dict.fromkeys(requested))


def preload_apps(bench: Bench) -> list[str]:
    """Import every app of every site (hooks, job modules, all submodules) once, so forked jobs pay no
    import cost; returns a line per problem instead of stopping."""
    problems: list[str] = []
    apps: dict[str, None] = {}
    for site in bench.site_names():
        try:
            settings = load_site_settings(bench, site)
        except BenchJobsError as exc:
            problems.append(f"{site}: {exc.message}")
            continue
        hooks = load_site_hooks(settings.apps, settings.bench.queues)
        problems += [f"{site}: {problem}" for problem in hooks.problems]
        apps.update(dict.fromkeys(settings.apps))
    for app in apps:
        problems += _import_package(app)
    importlib.import_module(JOB_FUNCTION.rpartition(".")[0])  # what every forked job runs
    return list(dict.fromkeys(problems))


def _import_package(app: str) -> list[str]:
    try:
        package = importlib.import_module(app)
    except Exception as exc:
        return [f"{app}: cannot import: {exc}"]
    problems = []
    for module in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{app}."):
        leaf = module.name.rsplit(".", 1)[1]
        if leaf == "tests" or leaf.startswith("test_") or ".tests." in module.name:
            continue
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            problems.append(f"{module.name}: cannot import: {type(exc).__name__}: {exc}")
    return problems


def run_worker(
    bench: Bench,
    queues: Sequence[str] | None = None,
    burst: bool = False,
    num_workers: int = 1,
    logging_level: str = "INFO",
) -> int:
    """Serve the bench's queues until a warm shutdown (SIGTERM/SIGINT); returns the exit code."""
    if num_workers < 1:
        raise ConfigError(f"--num-workers must be at least 1, not {num_workers}.")
    use_bench(bench)
    settings = load_bench_settings(bench)
    names = serving_order(settings, queues)
    conn = connect_checked(settings)
    for problem in preload_apps(bench):
        log.warning("preload: %s", problem)
    rq_queues = [rq_queue(conn, settings, name) for name in names]
    for queue in rq_queues:
        recover_orphans(conn, queue, Keys(settings.bench_id))
    if num_workers == 1:
        worker = BenchWorker(rq_queues, connection=conn)
        worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
        return 0
    pool = WorkerPool(
        [q.name for q in rq_queues],
        connection=conn,
        num_workers=num_workers,
        worker_class=BenchWorker,
        serializer=JSONSerializer,
        job_class=BenchJob,
        queue_class=BenchQueue,
    )
    pool.start(burst=burst, logging_level=logging_level)
    return 0
