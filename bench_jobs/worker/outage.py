"""Riding out a Redis outage. RQ 3 retries only its blocking dequeue; any other Redis call in its work loop
that fails makes the worker quit. Each of those steps here waits, skips or settles instead, and RQ's retry
scheduler waits the outage out too.

A full Redis (maxmemory reached under `noeviction`) is an outage for writes: Redis still answers PING and
reads but refuses every command that may grow memory with OutOfMemoryError (a transaction, at its EXEC, with
ExecAbortError). The worker treats it like a dead Redis wherever it writes, waits until a write goes through
again, and meanwhile keeps its own keys from expiring with EXPIRE (which a full Redis still accepts), so a live
worker is never judged dead for it."""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.utils import now
from rq.worker import WorkerStatus

from ..core.keys import Keys, bench_id_of
from ..core.replication import acknowledge, confirm_replicated
from ..errors import NotReplicated
from ..jobs.liveness import RESTART_GRACE_S
from ..jobs.lost_reply import Sender, fence
from .lost_write import client_ids, in_started_registry
from .recovery import NOT_STARTED_FIELD, recover_members, requeue_taken, started_members
from .take import intermediate_key

# Redis going away, or refusing writes when full, is waited out, never a reason to exit: retries after 1, 2,
# 4 ... 10 s. A transaction whose commands were queued while Redis had room but whose EXEC came once it was full
# is refused whole ("EXECABORT Transaction discarded because of: OOM ..."), which redis-py raises as an
# ExecAbortError (a refused queued command is raised as itself): nothing of it ran, as with any EXECABORT.
REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ExecAbortError,
)
REDIS_FULL_WARNING = (
    "Redis is full and refuses writes (%s); the worker waits and goes on. Free memory: raise maxmemory, or "
    "purge old jobs (`bench-jobs purge-jobs --failed`, shorter result TTLs)"
)
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 10.0
# A lost write whose connection could not be killed (CLIENT KILL refused to a bench's ACL user) is looked up
# this long after Redis answers again, so that a write still in a socket buffer lands first.
UNFENCED_GRACE_S = 1.0
ALIVE_HOLD_S = 60  # how long EXPIRE keeps a worker's keys in a full Redis; renewed at each refused write

# A child of RQ's worker logger: our lines share its handler, format and level.
log = logging.getLogger("rq.worker.bench_jobs")

T = TypeVar("T")

RQ_CANNOT_CONNECT = "Worker %s: could not connect to Redis instance: %s retrying in %d seconds..."


def redis_full(exc: object) -> bool:
    """Whether `exc` is a full Redis refusing a write (at once, or a transaction at its EXEC)."""
    if isinstance(exc, redis.exceptions.ExecAbortError):
        return "OOM" in str(exc)
    return isinstance(exc, redis.exceptions.OutOfMemoryError)


def ride_out(step: Callable[[], T], what: str) -> T:
    """Run `step` (idempotent) until Redis takes it: while Redis is away or full, retry with backoff."""
    delay = BACKOFF_FIRST_S
    while True:
        try:
            return step()
        except REDIS_DOWN as exc:
            log.warning("%s waits for Redis (%s); retrying in %.0f s", what, exc, delay)
        time.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX_S)


def resent_as_first(job: Job, record: Callable[[], T]) -> Callable[[], T]:
    """`record` of a job's failure, each resend deciding as the first did: RQ's Job.retry counts retries_left
    down in memory before its writes, so every resend of a retry that was cut off counted it down again, and a job
    with retries left was failed for good."""
    retries_left = job.retries_left

    def again() -> T:
        job.retries_left = retries_left
        return record()

    return again


class _OutageLogFilter(logging.Filter):
    """Turns RQ's line per retry of its dequeue into the worker's one line per outage."""

    def __init__(self, worker: OutageTolerantWorker) -> None:
        super().__init__()
        self._worker = weakref.ref(worker)

    def filter(self, record: logging.LogRecord) -> bool:
        worker = self._worker()
        args = record.args if isinstance(record.args, tuple) else ()
        if worker is None or record.msg != RQ_CANNOT_CONNECT or len(args) < 2 or args[0] != worker.name:
            return True
        worker._redis_lost(args[1])
        return False


class OutageTolerantWorker(Worker):
    """An RQ worker whose every Redis step outside the dequeue waits, skips or settles in an outage."""

    max_connection_wait_time = BACKOFF_MAX_S  # RQ's dequeue retries; its default lets a wait grow to 60 s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log.addFilter(_OutageLogFilter(self))

    def _mark_alive(self, pipeline: Any = None) -> None:
        """Refresh this worker's liveness key (the subclass owns it); called again as soon as Redis is back,
        and the write that tells a full Redis has room again."""

    def _alive_keys(self) -> list[str]:
        """The keys whose expiry says this worker lives (the subclass adds its own)."""
        return [self.key]

    _redis_down_since: float | None = None
    _redis_back_at = -float(RESTART_GRACE_S)
    _prepared: Execution | None = None

    def _redis_lost(self, exc: object) -> None:
        """Log an outage once, however many steps notice it; in a full Redis, keep this worker alive."""
        full = redis_full(exc)
        if full:
            self._hold_alive_keys()
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            if full:
                log.warning(REDIS_FULL_WARNING, exc)
            else:
                log.warning("Redis does not answer (%s); the worker waits for it and goes on", exc)

    def _hold_alive_keys(self) -> None:
        """EXPIRE (accepted by a full Redis) on this worker's keys: their writes are refused meanwhile, and
        an expired alive key would have the others hand back the job this worker still runs."""
        with contextlib.suppress(redis.exceptions.RedisError), self.connection.pipeline() as pipe:
            for key in self._alive_keys():
                pipe.expire(key, max(int(self.worker_ttl), ALIVE_HOLD_S))
            pipe.execute()

    def _redis_back(self) -> None:
        if self._redis_down_since is None:
            return
        log.info("Redis answers again after %.0f s; the worker goes on", time.monotonic() - self._redis_down_since)
        self._redis_down_since = None
        self._redis_back_at = time.monotonic()
        with contextlib.suppress(*REDIS_DOWN):
            self._mark_alive()  # at once: our key may have expired while Redis was away

    def _wait_for_redis(self, announce: bool = True) -> None:
        """Until Redis answers and takes a small write; `announce` logs that it is back (else the caller does,
        once its own step went through: `_until_taken`)."""
        delay = BACKOFF_FIRST_S
        while True:
            if self._stop_requested:  # a warm shutdown while Redis is away: stop without waiting for it
                raise StopRequested()
            try:
                self.connection.ping()
                self._mark_alive()  # a write: a full Redis answers PING but refuses it
            except REDIS_DOWN as exc:
                self._redis_lost(exc)
                time.sleep(delay)  # a SIGTERM here raises StopRequested: a warm shutdown as usual
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if announce:
                self._redis_back()
            return

    def _until_taken(self, step: Callable[[], T]) -> T:
        """`step` of RQ's loop until Redis takes it, waiting for Redis in between. A Redis that is barely full
        takes the small write `_wait_for_redis` tries but refuses the step's bigger one: the step's own retries
        then back off too (1, 2, 4 ... 10 s), and "answers again" is logged once the step itself went through,
        not after every small write (a worker logged 2,200 such lines in 30 s)."""
        delay = 0.0
        while True:
            try:
                result = step()
            except REDIS_DOWN as exc:
                self._redis_lost(exc)
                self._wait_for_redis(announce=False)
                time.sleep(delay)  # a SIGTERM here raises StopRequested: a warm shutdown as usual
                delay = min(delay * 2, BACKOFF_MAX_S) if delay else BACKOFF_FIRST_S
                continue
            self._redis_back()
            return result

    def register_birth(self) -> None:
        self._until_taken(super().register_birth)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's dequeue retries only a connection error; the take also writes, which a full Redis refuses."""
        return self._until_taken(
            lambda: super(OutageTolerantWorker, self).dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        )

    def check_for_suspension(self, burst: bool) -> None:
        self._until_taken(lambda: super(OutageTolerantWorker, self).check_for_suspension(burst))

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
        self._prepared = self.claim_execution(job)
        return self._prepared

    def claim_execution(self, job: Job) -> Execution:
        """RQ's preparation of an execution (the subclass claims the job atomically)."""
        return super().prepare_execution(job)

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

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """In the horse, before the job runs: RQ's bookkeeping (idempotent: a heartbeat, status `started`)
        waits for Redis, however long that takes; a dropped connection is retried at once on a new one. RQ
        would fail the job with the Redis error without running it."""
        self._record_outcome(lambda: self._prepare(job, remove_from_intermediate_queue))

    def _prepare(self, job: Job, remove_from_intermediate_queue: bool) -> None:
        """RQ's prepare_job_execution, whose MULTI also deletes the claim's not-started mark (recovery.py): the
        function is called only once this has landed, so a job whose mark is still there never ran."""
        with self.connection.pipeline() as pipeline:
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            self.heartbeat(heartbeat_ttl, pipeline=pipeline)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)
            pipeline.hdel(job.key, NOT_STARTED_FIELD)
            if remove_from_intermediate_queue:
                pipeline.lrem(intermediate_key(Queue.redis_queue_namespace_prefix + job.origin), 1, job.id)
            pipeline.execute()
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")  # type: ignore[no-untyped-call]

    def _finalize_success(self, job: Job, queue: Queue, execution: Execution, return_value: Any) -> None:
        """In the horse: a job that returned is recorded as finished once Redis answers, however long that
        takes. RQ would record the Redis error as the job's failure, or the parent would hand the job back."""
        self._record_outcome(
            lambda: super(OutageTolerantWorker, self)._finalize_success(job, queue, execution, return_value),
            lambda: not in_started_registry(self.connection, queue.started_job_registry, execution),
        )

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: Any) -> None:
        """In the horse: a job that raised is recorded as failed (or retried) once Redis answers. RQ logs a
        failure it could not write and goes on, so it is looked up after each attempt."""
        self._record_outcome(
            resent_as_first(
                job, lambda: super(OutageTolerantWorker, self)._finalize_failure(job, queue, execution, exc_info)
            ),
            lambda: not in_started_registry(self.connection, queue.started_job_registry, execution),
            look_after=True,
        )

    def _record_outcome(
        self, record: Callable[[], Any], landed: Callable[[], bool] | None = None, look_after: bool = False
    ) -> None:
        """`record` (RQ's bookkeeping before or after a job) until Redis takes it. An idempotent step
        (`landed` None) is simply sent again; any other is first looked up: once its sending connections are
        fenced (lost_write.py), `landed()` tells whether it ran, and it is sent again only if it did not (a
        blind resend recorded a job's outcome twice). `look_after`: `record` may swallow a refused write, so
        it is looked up after every attempt. With redis_queue_wait_replicas, it then waits until the replicas
        have it (WAIT again: the write is on the master). The first retry comes at once (a dropped connection:
        Redis is there), then after 1, 2, 4 ... 10 s."""
        delay = 0.0
        senders: list[Sender] = []  # the connections of every send so far
        sent = noted = recorded = found = False
        while True:
            try:
                if not recorded and sent and landed is not None:
                    if not fence(self.connection, senders):
                        time.sleep(UNFENCED_GRACE_S)  # the kill was refused: let a write on its way land first
                    recorded = found = landed()
                if not recorded:
                    sent = True
                    found = False
                    senders = list(dict.fromkeys([*senders, *client_ids(self.connection)]))  # this send's too
                    record()
                    if look_after and landed is not None and not landed():
                        raise redis.exceptions.ConnectionError("the write was refused")
                    recorded = True
                if found:  # WAIT counts its own connection's last write: one of ours goes first
                    confirm_replicated(self.connection, self._replicated_key(), "The job's state")
                else:
                    acknowledge(self.connection, "The job's state")
                break
            except NotReplicated as exc:
                log.warning("%s Waiting for the replicas.", exc.message)
            except REDIS_DOWN as exc:
                recorded = False  # a failover may have lost it: written again, on whichever master there is now
                if self._redis_down_since is None:
                    self._redis_down_since, noted = time.monotonic(), True
                    state = "is full" if redis_full(exc) else "does not answer"
                    log.warning("Redis %s (%s); the job's outcome is recorded when it is back", state, exc)
            time.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S) if delay else BACKOFF_FIRST_S
        if noted:
            self._redis_down_since = None

    def _replicated_key(self) -> str:
        return Keys(bench_id_of(self.queues[0].name)).replicated

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
