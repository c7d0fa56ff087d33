"""Work-horses that run many jobs: the worker forks one from its preloaded parent and hands it job after job
over a pipe, so a job pays no fork; the horse is recycled after `max_jobs_per_horse` jobs, once its memory
passes `max_horse_memory_mb`, after a job that overran its timeout, and after any crash.

The protocol (RQ's `fork_work_horse` and `monitor_work_horse` replaced; the pipes in horse_link.py):
- the worker claims the job as before, then hands the horse the job (its hash as the claim left it, as RQ's
  horse gets the job its worker read) and the execution, and waits for the answer, sending heartbeats;
- the horse runs RQ's `perform_job`, which records success or failure itself (as RQ's horse does), each job in
  a copy of the horse's contextvars (the site context, RQ's current job), with the environment and working
  directory put back afterwards, so nothing of one job is seen by the next; then it answers;
- the horse's death (end of its pipe, or its pidfd readable) before it answered fails the job with the
  waitpid status in the reason ("Work-horse terminated unexpectedly; ... (signal 11, SIGSEGV)"), or retries
  it, as RQ's monitor does; a horse that does not come back within the job's timeout plus a grace is killed,
  unless it said its job's function has returned: its outcome then waits for Redis as long as an outage lasts.
With `fork_per_job`, RQ's fork runs each job, and this monitor watches the horse the same way (a pipe of its
own carries `recording`; its exit, not an answer, ends the job).
Crash safety is the fork-per-job worker's: the horse asks for SIGKILL when the worker dies, the claim stays
in the worker, a job's horse is known as `horse_pid` only while it runs that job (cold shutdown and RQ's
stop-job kill it), and the worker's teardown stops and reaps an idle horse.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from rq import Queue
from rq.exceptions import InvalidJobOperation
from rq.executions import Execution
from rq.job import Job
from rq.utils import now
from rq.worker import WorkerStatus

from ..core.config import DEFAULT_MAX_HORSE_MEMORY_MB, DEFAULT_MAX_JOBS_PER_HORSE
from .horse_link import (
    MB,
    RECORDING,
    Assignment,
    Horse,
    describe_status,
    exit_fd,
    job_hash,
)
from .horse_side import HorseSide
from .lost_write import in_started_registry
from .outage import resent_as_first

HORSE_TIMEOUT_GRACE_S = 60  # as RQ's monitor: past its timeout plus this, a job's horse is killed
HORSE_STOP_WAIT_S = 2.0  # an idle horse told to stop exits at once; past this it is killed


class HorseWorker(HorseSide):
    """An RQ worker whose work-horse runs many jobs (`fork_per_job = False`, the default) or, with
    `fork_per_job = True`, RQ's fork per job."""

    fork_per_job = False
    max_jobs_per_horse = DEFAULT_MAX_JOBS_PER_HORSE
    max_horse_memory_mb = DEFAULT_MAX_HORSE_MEMORY_MB
    horse_timeout_grace_s = HORSE_TIMEOUT_GRACE_S
    _horse: Horse | None = None
    _forked: Horse | None = None  # fork-per-job: the horse forked for the current job
    _idle_written = False  # the last state written to Redis is `idle`
    _idle_unwritten = False  # `idle` was set since, and goes with the next heartbeat

    # Parent side.

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        if self.fork_per_job:
            self._fork_one(job, queue)
            return
        os.environ["RQ_WORKER_ID"] = self.name  # as RQ's fork sets them in the worker too
        os.environ["RQ_JOB_ID"] = job.id
        execution = self.execution
        assert execution is not None, "claim_execution registers the execution before the horse is asked"
        assignment = Assignment(job.id, job_hash(job), queue.name, execution.id, execution.created_at.timestamp())
        horse = self._live_horse()
        try:
            horse.send(assignment)
        except BrokenPipeError:  # it died since _live_horse looked: the job goes to a new one
            self._horse = None
            horse.bury()
            horse = self._live_horse()
            horse.send(assignment)
        self._horse_pid = horse.pid
        self.procline(f"Horse {horse.pid} runs {job.id} since {time.time()}")  # type: ignore[no-untyped-call]

    def _fork_one(self, job: Job, queue: Queue) -> None:
        """RQ's fork of a horse for this one job, with a pipe on which it says `recording` and a pidfd."""
        answers_read, answers_write = os.pipe()
        self._answers_fd = answers_write  # the horse's copy of the worker is forked with it
        try:
            super().fork_work_horse(job, queue)
        except BaseException:
            os.close(answers_read)
            raise
        finally:
            self._answers_fd = None
            os.close(answers_write)
        os.set_blocking(answers_read, False)
        self._forked = Horse(self._horse_pid, None, answers_read, exit_fd(self._horse_pid))

    def _live_horse(self) -> Horse:
        """The idle horse, or a new one when there is none or it died while idle (never hand it a job then)."""
        if self._horse is not None and self._horse.exited():
            status, _ = self._horse.bury()
            self.log.warning(
                "Worker %s: idle work-horse %s had ended (%s)", self.name, self._horse.pid, describe_status(status)
            )
            self._horse = None
        if self._horse is None:
            self._horse = self._start_horse()
        return self._horse

    def _start_horse(self) -> Horse:
        jobs_read, jobs_write = os.pipe()
        answers_read, answers_write = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the horse: never returns
            self._horse_main(parent, jobs_read, answers_write, (jobs_write, answers_read))
        with contextlib.suppress(OSError):  # as the horse does: a kill_horse right after the fork hits its group
            os.setpgid(pid, pid)
        os.close(jobs_read)
        os.close(answers_write)
        os.set_blocking(answers_read, False)
        self.log.debug("Worker %s: forked work-horse %s", self.name, pid)
        return Horse(pid, jobs_write, answers_read, exit_fd(pid))

    def monitor_work_horse(self, job: Job, queue: Queue, execution: Execution) -> None:
        """RQ's monitor, for both kinds of horse. In fork-per-job mode too it replaces RQ's, which failed a
        job whose function had returned once an outage held its outcome past the timeout plus 60 s, and whose
        failure of a dead horse's job, refused by Redis, was only logged: the job stayed `started`."""
        if self.fork_per_job:
            horse, self._forked = self._forked, None
        else:
            horse = self._horse
        assert horse is not None, "fork_work_horse handed the job to a horse"
        job.started_at = now()
        answer, overran = self._await_outcome(horse, job, execution)
        self._horse_pid = 0
        self.executions.pop(execution.id, None)  # the horse's cleanup popped only its own copy
        if answer:
            self._after_job(horse, answer)
            return
        if not self.fork_per_job:
            self._horse = None
        status, rusage = horse.bury(kill=overran or not self.fork_per_job)
        self.log.debug(
            "Worker %s: work-horse %s of job %s ended: %s", self.name, horse.pid, job.id, describe_status(status)
        )
        if self.fork_per_job and status == os.EX_OK:
            return  # as RQ's monitor: it exits 0 once it recorded the outcome
        self._settle_dead_horse(job, queue, execution, horse.pid, status, rusage, overran)

    def _await_outcome(self, horse: Horse, job: Job, execution: Execution) -> tuple[str, bool]:
        """The horse's answer ("" if it died first, or a fork-per-job horse exited) and whether it was killed for
        overrunning its timeout; heartbeats every job_monitoring_interval meanwhile. Once the horse said
        `recording`, the timeout no longer runs: its function has returned, and the write of its outcome
        waits for Redis (outage.py); killing it then would turn a success into a failure or a second run."""
        started = time.monotonic()
        timeout_s = job.timeout or self.queue_class.DEFAULT_TIMEOUT
        limit_s = None if timeout_s == -1 else timeout_s + self.horse_timeout_grace_s
        while True:
            wait_s = float(self.job_monitoring_interval)
            if limit_s is not None:
                wait_s = min(wait_s, limit_s - (time.monotonic() - started))
            answer = horse.await_answer(wait_s)
            if answer == RECORDING:
                limit_s = None
                continue
            if answer == "" and self.fork_per_job and not horse.exited():
                answer = None  # its pipe ended but it runs on (its job closed the pipe): its exit ends the job
            if answer is not None:
                return answer, False
            if limit_s is not None and time.monotonic() - started >= limit_s:
                self.heartbeat(self.job_monitoring_interval + 60)
                self.log.warning(
                    "Worker %s: job %s ran past its timeout of %s s and %s s more; killing its work-horse %s",
                    self.name,
                    job.id,
                    timeout_s,
                    self.horse_timeout_grace_s,
                    horse.pid,
                )
                self.kill_horse()
                return "", True
            self.maintain_heartbeats(job, execution)

    def _after_job(self, horse: Horse, answer: str) -> None:
        """Count the job and recycle the horse when it has done its share, grew too big, or overran."""
        _, rss_bytes, timed_out = [*answer.split(), "0", "0"][:3]
        horse.jobs_done += 1
        reason = ""
        if timed_out == "1":
            reason = "its job overran its timeout"
        elif int(rss_bytes) > self.max_horse_memory_mb * MB:
            reason = f"it holds {int(rss_bytes) // MB} MB, over max_horse_memory_mb = {self.max_horse_memory_mb}"
        elif horse.jobs_done >= self.max_jobs_per_horse:
            reason = f"it ran {horse.jobs_done} jobs (max_jobs_per_horse)"
        if reason:
            self.log.info("Worker %s: recycling work-horse %s: %s", self.name, horse.pid, reason)
            self.stop_horse()

    def _settle_dead_horse(
        self,
        job: Job,
        queue: Queue,
        execution: Execution,
        pid: int,
        status: int | None,
        rusage: Any,
        overran: bool,
    ) -> None:
        """RQ's monitor after a horse ended without answering: a stopped job is marked stopped; a job whose
        outcome the horse did not record fails (or is retried) with the reason. RQ looks for a status other than
        finished or failed, which also fails a job the horse had just sent to a retry; here the execution tells:
        the horse deletes it in the transaction that records the outcome."""
        try:
            job.get_status()
        except InvalidJobOperation:
            return  # the job is gone (finished with result_ttl 0, or deleted)
        if self._stopped_job_id == job.id:
            self._handle_stopped_job(job, queue, execution)
            return
        if not self.connection.exists(execution.key):
            return  # the horse recorded the outcome, then died before answering
        job.ended_at = now()
        if overran:
            reason = (
                f"Work-horse killed by worker {self.name}: the job ran past its timeout of "
                f"{job.timeout or self.queue_class.DEFAULT_TIMEOUT} s plus {self.horse_timeout_grace_s} s; "
            )
        else:
            reason = "Work-horse terminated unexpectedly; "
        reason += f"waitpid returned {status} ({describe_status(status)}); "
        self.log.warning("Worker %s: job %s failed (%s)", self.name, job.id, reason)
        self.handle_work_horse_killed(job, pid, status, rusage)  # type: ignore[no-untyped-call]
        self._record_outcome(
            resent_as_first(
                job, lambda: self.handle_job_failure(job, queue=queue, exc_string=reason, execution=execution)
            ),
            lambda: not in_started_registry(self.connection, queue.started_job_registry, execution),
            look_after=True,
        )

    def stop_horse(self) -> None:
        """Tell the idle horse to exit and reap it (killed if it does not go within HORSE_STOP_WAIT_S)."""
        horse, self._horse = self._horse, None
        if horse is None:
            return
        with contextlib.suppress(OSError):  # BrokenPipeError: it is gone already
            horse.send(None)
        deadline = time.monotonic() + HORSE_STOP_WAIT_S
        while not horse.exited() and time.monotonic() < deadline:
            time.sleep(0.005)
        horse.bury()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """RQ's, except for `idle` outside a pipeline: RQ's loop writes it at the end of every job and again as
        it starts to dequeue the next, each time right before a heartbeat. It is kept in memory (as RQ keeps
        every state) and written once, in the pipeline of that heartbeat: two round trips a job less."""
        if pipeline is None and state == WorkerStatus.IDLE:
            self._state = state
            self._idle_unwritten = self._idle_unwritten or not self._idle_written
            return
        self._idle_unwritten = self._idle_written = False
        super().set_state(state, pipeline)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, carrying the `idle` state set since the last one (see set_state)."""
        if self._idle_unwritten and pipeline is not None:
            super().set_state(WorkerStatus.IDLE, pipeline)
            self._idle_unwritten, self._idle_written = False, True
        super().heartbeat(timeout, pipeline)

    def teardown(self) -> None:
        if not self.is_horse:
            self.stop_horse()
        super().teardown()
