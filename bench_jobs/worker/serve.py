"""`bench-jobs worker`: RQ workers over a bench's queues, running jobs in a work-horse forked from a parent
that has already imported every app (one horse for many jobs, horse.py; or one per job with
`--fork-per-job`), with a short-lived liveness key so a dead worker never blocks a job.

What a SIGKILL at any instant leaves behind, and who settles it:
- taken off a queue, not yet claimed: the id waits in the queue's intermediate list with its taker's name;
  once the taker is dead it goes back to the front of its queue (dequeue.recover_taken);
- claimed (one MULTI: the execution, status `started`, the not-started mark, out of the intermediate list),
  its function not called yet: the worker's alive key or pid is gone, so the next maintenance puts it back at
  the front of its queue (recovery.recover_orphans: the mark is deleted only by the horse's preparation);
- prepared to run, or running: RQ's abandoned-job handling, retried when it has retries left, else failed as
  abandoned (recovery.recover_orphans);
- the work-horse and RQ's retry scheduler die with the worker (lifetime.die_with_parent), so no job is handed
  back while its code still runs, and no process outlives the worker.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from typing import Any

import redis
from redis.exceptions import WatchError
from rq import Queue, worker_registration
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker import WorkerStatus

from ..core.bench import Bench
from ..core.config import BenchSettings, load_bench_settings, load_site_settings
from ..core.connection import lua
from ..core.context import active_bench
from ..core.keys import Keys, bench_id_of, queue_of, rq_queue_name, worker_name
from ..errors import BenchJobsError
from ..jobs.fair import RENEW_LUA, RUNNING_LEASE_S, publish_limits, reindex, wake
from ..jobs.liveness import LOADED_CODE_FIELD, RESTART_GRACE_S, alive_value
from ..jobs.lost_reply import Sender, fence
from ..jobs.rq_job import BenchJob
from .horse import HorseWorker
from .lifetime import die_with_parent
from .lost_write import client_ids_of, in_started_registry
from .outage import BACKOFF_FIRST_S, BACKOFF_MAX_S, REDIS_DOWN
from .preload import loaded_code_ns
from .recovery import NOT_STARTED_FIELD, clean_finished_registries, recover_orphans
from .rq_scheduler import BenchScheduler
from .take import WorkerQueue, intermediate_key, place, recover_taken, taker

ALIVE_TTL_S = 15  # a worker that missed this long is dead; heartbeats come at least every JOB_MONITORING_S
JOB_MONITORING_S = 5
WORKER_TTL_S = 20  # RQ blocks on the queues for WORKER_TTL_S - 15 s between heartbeats
# How long the listener for `rq` commands (stop-job, shutdown) waits for a message before it looks whether it
# should stop. RQ waits 60 s, and redis-py 8.2's PubSubWorkerThread.stop() joins the listener, so every stop
# of a worker took up to a minute.
PUBSUB_WAIT_S = 0.5
MAINTENANCE_INTERVAL_S = 60
# RQ's scheduler process looks for due retries and delayed jobs this often (RQ: every second). Workers move them
# on time themselves (worker/due.py, woken by every schedule), so it is only the backstop.
SCHEDULER_INTERVAL_S = 10
assert ALIVE_TTL_S + BACKOFF_MAX_S + JOB_MONITORING_S <= RESTART_GRACE_S, "re-marked within the grace"

# A child of RQ's worker logger: our lines share its handler, format and level.
log = logging.getLogger("rq.worker.bench_jobs")


class JobGivenBack(Exception):
    """Raised by a claim when the job is no longer this worker's to run: it went back to its queue."""


class BenchWorker(HorseWorker):
    """An RQ worker with JSON payloads that also keeps `bench_jobs:<bench>:alive:<name>` fresh."""

    _forked_by = 0  # the pid that forked the current work-horse
    # The running set that holds the current job's place, the place, and the pid of the worker that took it
    # (a reused work-horse, forked after a claim, must not renew its first job's place for ever).
    _capped: tuple[str, str, int] = ("", "", 0)

    def __init__(self, queues: Any, name: str | None = None, *args: Any, **kwargs: Any) -> None:
        pool = multiprocessing.parent_process()
        if pool is not None and pool.pid:  # a worker of `--num-workers N`: it dies with the pool's parent
            die_with_parent(pool.pid)
        kwargs.setdefault("serializer", JSONSerializer)
        kwargs["job_class"] = BenchJob  # always: RQ's WorkerPool passes job_class=Job explicitly
        # Always too: the queue a job was taken from is rebuilt with this class, and its dependents methods
        # are what a finished or failed job's horse calls (BenchQueue has none to enqueue).
        kwargs["queue_class"] = WorkerQueue
        # A plain RQ queue would fetch jobs with pickle and RQ's Job: every queue is a BenchQueue, by name.
        queues = [q if isinstance(q, WorkerQueue) else getattr(q, "name", q) for q in _as_list(queues)]
        kwargs.setdefault("worker_ttl", WORKER_TTL_S)
        kwargs.setdefault("job_monitoring_interval", JOB_MONITORING_S)
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_S)
        # How long a finished job is kept is the worker's setting (job_result_ttl), not written into every job.
        settings = load_bench_settings(active_bench())
        kwargs.setdefault("default_result_ttl", settings.result_ttl_s)
        self.max_jobs_per_horse, self.max_horse_memory_mb = settings.max_jobs_per_horse, settings.max_horse_memory_mb
        # Named by its bench, so its keys and its command channel fall under the bench's ACL patterns (rq_acl.py).
        super().__init__(queues, worker_name(settings.bench_id, name), *args, **kwargs)
        first = self.queues[0].name
        self.bench_keys = Keys(bench_id_of(first))

    def _mark_alive(self, pipeline: Any = None) -> None:
        """The alive key, and the lease of the running job's place under its site's cap (if it has one)."""
        target = pipeline if pipeline is not None else self.connection
        target.set(self.bench_keys.worker_alive(self.name), alive_value(self.pid or os.getpid()), ex=ALIVE_TTL_S)
        running, member, taker_pid = self._capped
        if running and taker_pid == os.getpid():
            lua(self.connection, RENEW_LUA)(keys=[running], args=[member, RUNNING_LEASE_S * 1000], client=target)

    def _alive_keys(self) -> list[str]:
        return [*super()._alive_keys(), self.bench_keys.worker_alive(self.name)]

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO", *args: Any) -> None:
        """RQ's own, with BenchScheduler: retries and delayed jobs are moved to their queues on time."""
        self.scheduler = BenchScheduler(
            self.queues,
            connection=self.connection,
            interval=SCHEDULER_INTERVAL_S,
            logging_level=logging_level or "INFO",
            serializer=self.serializer,
            name=worker_name(self.bench_keys.bench_id),
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

    def serialize(self) -> dict[str, Any]:
        """RQ's fields of the worker's hash, and the stamp of the app code this worker loaded (for doctor)."""
        return {**super().serialize(), LOADED_CODE_FIELD: loaded_code_ns(active_bench())}

    def register_birth(self) -> None:
        super().register_birth()  # type: ignore[no-untyped-call]
        self._mark_alive()
        # RQ adds a queue to its set of queues (`rq:queues`) only when a job is first enqueued on it, so `rq
        # info` on a fresh bench would list no queue of this worker: the worker names its queues itself.
        self.connection.sadd(Queue.redis_queues_keys, *(queue.key for queue in self.queues))

    def subscribe(self) -> None:
        """RQ's subscription to its command channel, with a listener that notices a stop within PUBSUB_WAIT_S."""
        log.debug("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=PUBSUB_WAIT_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def request_force_stop(self, signum: int, frame: Any) -> None:
        """A second SIGTERM/SIGINT: RQ's cold shutdown kills the work-horse and exits, and its job would stay
        `started` until recovery hands it back (about a minute later). Here the job is failed at once (or
        retried, when it has retries left), with the reason in its traceback, before the worker exits."""
        job, execution = None, getattr(self, "execution", None)
        if self.horse_pid:
            try:
                job = self.get_current_job()
            except REDIS_DOWN:
                job = None
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:
            if job is not None:
                self._fail_on_cold_shutdown(job, execution, signum)
            raise

    def _fail_on_cold_shutdown(self, job: Job, execution: Execution | None, signum: int) -> None:
        queue = self.queue_class(
            job.origin, connection=self.connection, job_class=self.job_class, serializer=self.serializer
        )
        job.ended_at = now()
        reason = (
            f"Stopped by a second {signal.Signals(signum).name} (cold shutdown of worker {self.name}): "
            "the work-horse was killed."
        )
        try:
            self.handle_job_failure(job, queue=queue, exc_string=reason, execution=execution)
            self.log.warning("Worker %s: job %s failed: %s", self.name, job.id, reason)
        except REDIS_DOWN:  # recovery hands the job back once Redis answers again
            self.log.warning("Worker %s: could not fail job %s (Redis is away)", self.name, job.id)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        token = taker.set(self.name)  # TakingQueue.dequeue_any records who took each job
        try:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            taker.reset(token)

    def claim_execution(self, job: Job) -> Execution:
        """Claim a taken job in one MULTI: its execution and started-registry member, status `started` with
        this worker's name, the mark that its function was not called yet (NOT_STARTED_FIELD, recovery.py),
        and out of the intermediate list. RQ writes the status only later, in the horse, so
        a kill in between left a started member whose job still said `queued`, which recovery then dropped.
        The claim holds only while this worker is still the job's taker: a worker judged dead meanwhile (a
        stall past its alive key's TTL) finds its job given back and leaves it (JobGivenBack)."""
        taken, me = self.bench_keys.taken, self.name.encode()
        delay = 0.0  # between claims Redis refused or cut off (a barely full Redis takes the alive write only)
        while True:
            execution, sender = None, []
            with self.connection.pipeline() as pipe:
                try:
                    pipe.watch(taken)  # type: ignore[no-untyped-call]
                    if pipe.hget(taken, job.id) != me:
                        raise JobGivenBack(job.id)
                    pipe.multi()
                    ttl_s = self.get_heartbeat_ttl(job)
                    execution = Execution.create(job, ttl_s, pipeline=pipe, worker_name=self.name)
                    job.prepare_for_execution(self.name, pipeline=pipe)
                    pipe.hset(job.key, NOT_STARTED_FIELD, execution.id)  # until the horse's preparation
                    pipe.lrem(intermediate_key(Queue.redis_queue_namespace_prefix + job.origin), 0, job.id)
                    pipe.hdel(taken, job.id)
                    self.set_state(WorkerStatus.BUSY, pipeline=pipe)
                    sender = client_ids_of(pipe)
                    pipe.execute()
                except WatchError as watched:
                    # redis-py raises a connection lost under WATCH (a drop, a reply timeout) as a WatchError,
                    # the ConnectionError or TimeoutError as its context: at EXEC, the claim may have landed.
                    lost = watched.__context__
                    if execution is None or not isinstance(lost, REDIS_DOWN):
                        continue  # another take or claim of the bench wrote the hash: look again
                    if not self._claim_landed(job, execution, sender, lost):
                        time.sleep(delay)
                        delay = min(delay * 2, BACKOFF_MAX_S) if delay else BACKOFF_FIRST_S
                        continue  # it never ran: the job is still taken by this worker, claim it again
                except REDIS_DOWN as exc:  # a reply was lost: look the claim up, never send it blindly again
                    if execution is None or not self._claim_landed(job, execution, sender, exc):
                        if execution is None:
                            self._redis_lost(exc)
                            self._wait_for_redis()
                        time.sleep(delay)
                        delay = min(delay * 2, BACKOFF_MAX_S) if delay else BACKOFF_FIRST_S
                        continue  # it never ran: the job is still taken by this worker, claim it again
            self.executions[execution.id] = execution
            self._capped = (getattr(job, "bench_running_key", ""), place(job.id, self.name), os.getpid())
            return execution

    def _claim_landed(self, job: Job, execution: Execution, sender: list[Sender], exc: Exception) -> bool:
        """Whether a claim whose reply was lost ran: once Redis answers, its connection is fenced and its
        execution looked up in the started registry (lost_write.py)."""
        while True:
            self._redis_lost(exc)
            self._wait_for_redis()
            try:
                fence(self.connection, sender)
                return in_started_registry(self.connection, job.started_job_registry, execution)
            except REDIS_DOWN as again:
                exc = again

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except JobGivenBack:
            log.warning("job %s was given back to %s while this worker stalled; left to others", job.id, queue.name)
            self.set_state(WorkerStatus.IDLE)
        finally:
            self.job_ended(job)

    def job_ended(self, job: Job) -> None:
        """Called in the worker (never the horse) once `job` no longer runs here, however it ended: frees the
        job's place under its site's concurrency cap."""
        running = getattr(job, "bench_running_key", "")
        self._capped = ("", "", 0)
        if not running:
            return
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.zrem(running, place(job.id, self.name))
                for queue in self.queues:  # a worker blocked while the site was at its cap may take its next job
                    wake(pipe, self.bench_keys.wake(queue_of(queue.name)))
                pipe.execute()
        except REDIS_DOWN as exc:  # the place's lease runs out by itself
            self._redis_lost(exc)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        self._forked_by = os.getpid()
        super().fork_work_horse(job, queue)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        """The horse (RQ's, in the child after fork) first asks to be killed when its worker dies: a horse left
        running would finish a job that recovery has already handed back."""
        die_with_parent(self._forked_by, signal.SIGKILL)
        super().main_work_horse(job, queue)

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

    def clean_group_registries(self) -> None:
        """RQ's, skipped where the bench's ACL user (create-rq-users) may not read RQ's groups: they are
        server-wide (`rq:groups`, `rq:clean_groups`) and bench-jobs makes none."""
        with contextlib.suppress(redis.exceptions.NoPermissionError):
            super().clean_group_registries()  # type: ignore[no-untyped-call]

    def clean_registries(self) -> None:
        """RQ's maintenance, except its two ways of judging a job by time alone, which fail jobs of live
        workers after a stall or an outage: started jobs are judged by their worker's liveness
        (recover_orphans), and taken ids by their taker's (recover_taken), which requeues instead of failing."""
        # A worker that was cut off from Redis itself waits out the grace too: so may the others have been.
        judge = time.monotonic() - self._redis_back_at >= RESTART_GRACE_S
        for queue in self.queues:
            if not queue.acquire_maintenance_lock():
                continue
            try:
                reindex(self.connection, queue)
                if judge:
                    recover_orphans(self.connection, queue, self.bench_keys)
                    recover_taken(self.connection, queue, self.bench_keys)
                clean_finished_registries(queue)
                worker_registration.clean_worker_registry(queue)
            finally:
                queue.release_maintenance_lock()  # type: ignore[no-untyped-call]
        publish_site_limits(self.connection, active_bench())
        self.last_cleaned_at = now()  # type: ignore[assignment]


class ForkPerJobWorker(BenchWorker):
    """A BenchWorker that forks a fresh work-horse for every job, as RQ's worker does (`--fork-per-job`)."""

    fork_per_job = True


def _as_list(queues: Any) -> list[Any]:
    return list(queues) if isinstance(queues, (list, tuple)) else [queues]


def publish_site_limits(conn: redis.Redis, bench: Bench) -> None:
    """Write every site's `max_concurrent_jobs` and `queue_weight` where the fair take reads them (at start and
    every maintenance run, so an edited config applies within MAINTENANCE_INTERVAL_S)."""
    limits = []
    for site in bench.site_names():
        try:
            settings = load_site_settings(bench, site)
        except BenchJobsError:
            continue  # preload names the problem; the site's last published limits stay
        limits.append((site, settings.max_concurrent_jobs, settings.queue_weight))
    publish_limits(conn, load_bench_settings(bench).bench_id, limits)


def worker_queue(conn: redis.Redis, settings: BenchSettings, name: str) -> WorkerQueue:
    """The queue `name` of the bench as a worker serves it (the fair, crash-safe take)."""
    timeout_s = settings.queue(name).timeout_s
    return WorkerQueue(rq_queue_name(settings.bench_id, name), connection=conn, default_timeout=timeout_s)
