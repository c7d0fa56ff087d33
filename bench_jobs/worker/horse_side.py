"""The work-horse's side of a HorseWorker (horse.py has the worker's): the loop a forked horse runs, job after
job, and RQ's bookkeeping of one job as the horse does it."""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import signal
from datetime import datetime, timezone
from typing import Any

from rq import Queue
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.rate_limit import release_slot
from rq.registry import StartedJobRegistry
from rq.timeouts import JobTimeoutException
from rq.utils import now
from rq.worker.base import logger as rq_worker_log

from ..jobs.queues import BenchQueue
from .horse_link import RECORDING, Assignment, read_assignment, resident_bytes, restore_process
from .lifetime import die_with_parent
from .outage import OutageTolerantWorker


class HorseSide(OutageTolerantWorker):
    """What a work-horse runs (HorseWorker forks it)."""

    _answers_fd: int | None = None  # in a horse: where it tells its worker `recording` (horse_link.py)
    _horse_timed_out = False  # in the horse: its current job overran its timeout

    def _horse_main(self, parent: int, jobs_fd: int, answers_fd: int, workers_ends: tuple[int, ...]) -> None:
        """The horse's loop: run each job it is sent, answer, until told to stop or the pipe ends."""
        try:
            self._answers_fd = answers_fd
            os.setpgrp()
            for fd in workers_ends:
                os.close(fd)
            die_with_parent(parent, signal.SIGKILL)
            random.seed()
            self.setup_work_horse_signals()  # type: ignore[no-untyped-call]
            self._is_horse = True
            self.log = rq_worker_log
            environ = {key: value for key, value in os.environ.items() if key != "RQ_JOB_ID"}
            cwd = os.getcwd()
            with os.fdopen(jobs_fd, "rb") as jobs:
                while (assignment := read_assignment(jobs)) is not None:
                    self._run_one(assignment)
                    restore_process(environ, cwd)
                    os.write(answers_fd, f"done {resident_bytes()} {int(self._horse_timed_out)}\n".encode())
        except BaseException:
            with contextlib.suppress(BaseException):
                self.log.exception("Work-horse %s: stopping after an error outside any job", os.getpid())
            os._exit(1)
        os._exit(0)

    def _run_one(self, assignment: Assignment) -> None:
        """Run one job as RQ's horse does (RQ's horse, too, runs the job its worker read), in a fresh copy of
        the horse's contextvars."""
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = assignment.job_id
        job = self.job_class(assignment.job_id, connection=self.connection, serializer=self.serializer)
        if assignment.job_hash is None:
            job.refresh()  # type: ignore[no-untyped-call]
        else:
            job.restore(assignment.job_hash)
        name = assignment.queue_name
        queue = next((q for q in self.queues if q.name == name), None) or self.queue_class(
            name, connection=self.connection, job_class=self.job_class, serializer=self.serializer
        )
        execution = Execution(assignment.execution_id, job.id, self.connection, worker_name=self.name)
        execution.created_at = datetime.fromtimestamp(assignment.execution_created_at, tz=timezone.utc)
        execution._job = job
        self.executions = {execution.id: execution}
        self._horse_timed_out = False
        contextvars.copy_context().run(self.perform_job, job, queue, execution)
        self.executions.clear()

    def _finalize_success(self, job: Job, queue: Queue, execution: Execution, return_value: Any) -> None:
        self._tell_recording()
        super()._finalize_success(job, queue, execution, return_value)

    def _finalize_failure(self, job: Job, queue: Queue, execution: Execution, exc_info: Any) -> None:
        self._tell_recording()
        super()._finalize_failure(job, queue, execution, exc_info)

    def _tell_recording(self) -> None:
        """In the horse, once the job's function has returned or raised: tell the worker (horse_link.py), so
        that its timeout stops (the write of the outcome may wait out a Redis outage)."""
        if self._answers_fd is not None and self.is_horse:
            with contextlib.suppress(OSError):  # the worker is gone: the horse dies with it
                os.write(self._answers_fd, f"{RECORDING}\n".encode())

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """RQ's, without its heartbeat of the job when the job has no RQ success or failure callback (a
        BenchJob never has): the heartbeat keeps the job in the started registry while such a callback runs,
        and costs a round trip per job."""
        if job.success_callback is not None or job.failure_callback is not None:
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        job.ended_at = now()

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        """RQ's record of a job that returned, in one round trip. RQ first WATCHes the job's dependents set
        (a round trip) so that a dependent added meanwhile is enqueued; a BenchQueue has no dependents, so
        the transaction that records the outcome and ends the claim goes out as soon as the function has
        returned: a kill before it lands runs the job again (at least once), and this is that window."""
        if not isinstance(queue, BenchQueue) or job.repeats_left:
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        with self.connection.pipeline() as pipeline:
            self.increment_successful_job_count(pipeline=pipeline)  # type: ignore[no-untyped-call]
            assert job.started_at and job.ended_at, "perform_job and handle_execution_ended set them"
            self.increment_total_working_time(job.ended_at - job.started_at, pipeline)  # type: ignore[no-untyped-call]
            result_ttl = job.get_result_ttl(self.default_result_ttl)
            if result_ttl != 0:
                job._handle_success(
                    result_ttl,
                    pipeline=pipeline,
                    worker_name=self.name,
                    execution_id=execution.id,
                    execution_started_at=execution.created_at,
                    execution_ended_at=job.ended_at,
                )
            else:  # RQ writes no status for a result kept 0 s (the job is deleted): counted all the same
                job.set_status(JobStatus.FINISHED, pipeline=pipeline)
            job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
            job._status = JobStatus.FINISHED
            self.cleanup_execution(job, pipeline=pipeline, execution=execution)
            pipeline.execute()
        release_slot(job)
        self.log.info(
            "Successfully completed job %s in %ss on worker %s", job.id, job.ended_at - job.started_at, self.name
        )

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """In the horse: note a job that overran its timeout, so its horse is recycled (the timeout's
        exception may have left a lock or a module half-updated)."""
        if isinstance(exc_info[1] if len(exc_info) > 1 else None, JobTimeoutException):
            self._horse_timed_out = True
        super().handle_exception(job, *exc_info)  # type: ignore[no-untyped-call]
