"""`bench-jobs worker`: RQ workers over a bench's queues, forking each job from a parent that has
already imported every app, with a short-lived liveness key so a dead worker never blocks a job."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pkgutil
import time
import weakref
from collections.abc import Sequence
from typing import Any, cast

import redis
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key
from rq.worker import WorkerStatus
from rq.worker_pool import WorkerPool

from .bench import Bench
from .config import BenchSettings, load_bench_settings, load_site_settings
from .context import active_bench, use_bench
from .errors import BenchJobsError, ConfigError
from .hooks import load_site_hooks
from .keys import JOB_FUNCTION, Keys, bench_id_of
from .liveness import RESTART_GRACE_S, alive_value, orphaned, worker_is_alive
from .queues import queue_order, rq_queue
from .redis_conn import connect_checked
from .rq_job import BenchJob

ALIVE_TTL_S = 15  # a worker that missed this long is dead; heartbeats come at least every JOB_MONITORING_S
JOB_MONITORING_S = 5
WORKER_TTL_S = 20  # RQ blocks on the queues for WORKER_TTL_S - 15 s between heartbeats
MAINTENANCE_INTERVAL_S = 60
# Redis going away is waited out, never a reason to exit: retries after 1, 2, 4 ... 10 s.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 10.0
assert ALIVE_TTL_S + BACKOFF_MAX_S + JOB_MONITORING_S <= RESTART_GRACE_S, "re-marked within the grace"

# A child of RQ's worker logger: our lines share its handler, format and level.
log = logging.getLogger("rq.worker.bench_jobs")


RQ_CANNOT_CONNECT = "Worker %s: could not connect to Redis instance: %s retrying in %d seconds..."


class _OutageLogFilter(logging.Filter):
    """Turns RQ's line per retry of its dequeue into the worker's one line per outage."""

    def __init__(self, worker: BenchWorker) -> None:
        super().__init__()
        self._worker = weakref.ref(worker)

    def filter(self, record: logging.LogRecord) -> bool:
        worker = self._worker()
        args = record.args if isinstance(record.args, tuple) else ()
        if worker is None or record.msg != RQ_CANNOT_CONNECT or len(args) < 2 or args[0] != worker.name:
            return True
        worker._redis_lost(args[1])
        return False


class BenchScheduler(RQScheduler):
    """RQ's scheduler of delayed jobs and retry delays (a process the worker forks), which waits out a Redis
    outage instead of dying with it: otherwise retries would wait for the worker's next maintenance."""

    def work(self) -> None:
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        self.register_birth()  # type: ignore[no-untyped-call]
        down = False
        while not self._stop_requested:
            try:
                if self.should_reacquire_locks:
                    self.acquire_locks()  # type: ignore[no-untyped-call]
                self.heartbeat()  # type: ignore[no-untyped-call]  # re-takes a lock that expired meanwhile
                self.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
                if down:
                    log.info("RQ scheduler: Redis answers again")
                down = False
            except REDIS_DOWN as exc:
                if not down:
                    log.warning("RQ scheduler: Redis does not answer (%s); retrying every %s s", exc, self.interval)
                down = True
            time.sleep(self.interval)
        with contextlib.suppress(*REDIS_DOWN):
            self.stop()  # type: ignore[no-untyped-call]


class BenchWorker(Worker):
    """An RQ worker with JSON payloads that also keeps `bench_jobs:<bench>:alive:<name>` fresh."""

    max_connection_wait_time = BACKOFF_MAX_S  # RQ's dequeue retries; its default lets a wait grow to 60 s

    def __init__(self, queues: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs["job_class"] = BenchJob  # always: RQ's WorkerPool passes job_class=Job explicitly
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_S)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_S)
        # How long a finished job is kept is the worker's setting (job_result_ttl), not written into every job.
        kwargs.setdefault("default_result_ttl", load_bench_settings(active_bench()).result_ttl_s)
        super().__init__(queues, *args, **kwargs)
        self.log.addFilter(_OutageLogFilter(self))
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

    # Riding out a Redis outage. RQ retries only its blocking dequeue; any other Redis call in its work loop
    # that fails makes the worker quit. Each of those steps below waits, skips or settles instead.

    _redis_down_since: float | None = None
    _redis_back_at = -float(RESTART_GRACE_S)
    _prepared: Execution | None = None

    def _redis_lost(self, exc: object) -> None:
        """Log an outage once, however many steps notice it."""
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning("Redis does not answer (%s); the worker waits for it and goes on", exc)

    def _redis_back(self) -> None:
        if self._redis_down_since is None:
            return
        log.info("Redis answers again after %.0f s; the worker goes on", time.monotonic() - self._redis_down_since)
        self._redis_down_since = None
        self._redis_back_at = time.monotonic()
        with contextlib.suppress(*REDIS_DOWN):
            self._mark_alive()  # at once: our key may have expired while Redis was away

    def _wait_for_redis(self) -> None:
        delay = BACKOFF_FIRST_S
        while True:
            if self._stop_requested:  # a warm shutdown while Redis is away: stop without waiting for it
                raise StopRequested()
            try:
                self.connection.ping()
            except REDIS_DOWN as exc:
                self._redis_lost(exc)
                time.sleep(delay)  # a SIGTERM here raises StopRequested: a warm shutdown as usual
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self._redis_back()
            return

    def check_for_suspension(self, burst: bool) -> None:
        while True:
            try:
                super().check_for_suspension(burst)  # type: ignore[no-untyped-call]
                return
            except REDIS_DOWN as exc:
                self._redis_lost(exc)
                self._wait_for_redis()

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]
        except REDIS_DOWN as exc:
            self._redis_lost(exc)  # not marked done, so the next turn of the loop runs it again

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_DOWN as exc:
            self._redis_lost(exc)  # the horse goes on; the next beat comes in JOB_MONITORING_S

    def set_shutdown_requested_date(self) -> None:
        try:
            super().set_shutdown_requested_date()  # type: ignore[no-untyped-call]
        except REDIS_DOWN as exc:
            self._redis_lost(exc)

    def prepare_execution(self, job: Job) -> Execution:
        self._prepared = None
        self._prepared = super().prepare_execution(job)
        return self._prepared

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
            return
        except REDIS_DOWN as exc:
            # Heartbeats no longer raise, so the horse is not running: it was never forked, or it ended
            # and its outcome could not be read or written. Once Redis is back the job is settled.
            self._redis_lost(exc)
        if self._horse_pid:  # never settle a job whose horse might still run
            with contextlib.suppress(ChildProcessError):
                self.wait_for_horse()
            self._horse_pid = 0
        self.executions.clear()  # one job at a time: drop the entry of an execution that may never have been saved
        execution, self._prepared = self._prepared, None
        while True:
            self._wait_for_redis()
            try:
                self._settle(job, queue, execution)
                break
            except REDIS_DOWN as exc:
                self._redis_lost(exc)
        self.set_state(WorkerStatus.IDLE)

    def _settle(self, job: Job, queue: Queue, execution: Execution | None) -> None:
        """The job of an execute_job that Redis interrupted, once Redis is back."""
        if execution is not None:  # this very execution, never another worker's run of the same job
            if recover_members(self.connection, queue, [execution.composite_key]):
                log.warning("job %s ended while Redis was away; handed to RQ's abandoned-job handling", job.id)
            return
        if recover_members(self.connection, queue, started_members(self.connection, queue, job.id)):
            log.warning("job %s started as Redis went away; handed to RQ's abandoned-job handling", job.id)
        elif requeue_taken(self.connection, queue, job.id):
            log.warning("job %s was taken from %s as Redis went away; put back at its front", job.id, queue.name)

    def teardown(self) -> None:
        try:
            super().teardown()  # type: ignore[no-untyped-call]
        except REDIS_DOWN as exc:
            log.warning("Redis does not answer (%s); the worker stops without deregistering", exc)

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        if not isinstance(exc, redis.exceptions.ConnectionError):
            super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)
            return
        time.sleep(2.0)  # quietly: the main loop reports the outage, and RQ would log here every 2 s


def recover_orphans(conn: redis.Redis, queue: Queue, bench_keys: Keys) -> int:
    """Hand jobs started by a worker that is no longer alive to RQ's abandoned-job handling (retried when
    retries are left, else failed); returns how many. RQ alone notices only minutes later."""
    registry = StartedJobRegistry(queue=queue, job_class=BenchJob)
    members = [m.decode() for m in cast(list[bytes], conn.zrange(registry.key, 0, -1))]
    if not members:
        return 0
    job_ids = [parse_composite_key(member)[0] for member in members]
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(Job.key_for(job_id), ["worker_name", "started_at"])
        fields = pipe.execute()
    with conn.pipeline(transaction=False) as pipe:
        for worker, _ in fields:
            pipe.get(bench_keys.worker_alive(worker.decode() if worker else ""))
        alive = pipe.execute()
    looks_dead = {
        m: started for m, (_, started), value in zip(members, fields, alive, strict=True) if not worker_is_alive(value)
    }
    orphans = orphaned(conn, looks_dead)
    if len(orphans) < len(looks_dead):  # their alive keys expired while Redis was down: they may still be running
        waiting = len(looks_dead) - len(orphans)
        log.info("%d job(s) on %s started before Redis restarted; judged after the grace", waiting, queue.name)
    if orphans:
        _abandon(conn, registry, sorted(orphans))
        log.warning("recovered %d job(s) of dead workers on %s", len(orphans), queue.name)
    return len(orphans)


def started_members(conn: redis.Redis, queue: Queue, job_id: str) -> list[str]:
    """The started-registry members (`<job id>:<execution id>`) of one job."""
    key = StartedJobRegistry(queue=queue, job_class=BenchJob).key
    members = [m.decode() for m in cast(list[bytes], conn.zrange(key, 0, -1))]
    return [m for m in members if parse_composite_key(m)[0] == job_id]


def recover_members(conn: redis.Redis, queue: Queue, members: Sequence[str]) -> int:
    """Hand these executions, if RQ still has them as started, to its abandoned-job handling; returns how many."""
    registry = StartedJobRegistry(queue=queue, job_class=BenchJob)
    with conn.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.zscore(registry.key, member)
        present = [m for m, score in zip(members, pipe.execute(), strict=True) if score is not None]
    if present:
        _abandon(conn, registry, present)
    return len(present)


# A job popped from its queue whose execution was never saved: back to the front of the queue, once.
REQUEUE_TAKEN_LUA = """
if redis.call('HGET', KEYS[3], 'status') ~= 'queued' then return 0 end
redis.call('LREM', KEYS[2], 0, ARGV[1])
if redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
return 1
"""


def requeue_taken(conn: redis.Redis, queue: Queue, job_id: str) -> bool:
    keys = [queue.key, IntermediateQueue.get_intermediate_queue_key(queue.key), Job.key_for(job_id)]
    return bool(conn.eval(REQUEUE_TAKEN_LUA, len(keys), *keys, job_id))


def _abandon(conn: redis.Redis, registry: StartedJobRegistry, members: list[str]) -> None:
    """Expire these started-registry members now, so RQ retries the jobs that have retries left and fails the
    others as abandoned."""
    conn.zadd(registry.key, dict.fromkeys(members, 0), xx=True)
    registry.cleanup(timestamp=1)


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
    )
    pool.start(burst=burst, logging_level=logging_level)
    return 0
