"""The RQ job class of every bench-jobs queue and worker."""

from __future__ import annotations

import time
from typing import Any

from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus

from ..core.keys import JOB_FUNCTION, bench_id_of, owner_of_job_id, queue_of
from ..core.text import one_line
from ..errors import JobError
from .brief import BRIEF_CHARS, summary_fields
from .payload import PayloadTooLarge, inflate
from .throughput import count_outcome


class BenchJob(Job):
    """An RQ job that runs only bench-jobs' own entry point, so a payload written into Redis by someone else
    that names any other function (`os.system`, say) fails without anything being called; and a failed job
    is kept for the bench's `job_failure_ttl` (read once per process, not stored in every job).

    Every other RQ field that imports, calls, fetches or enqueues something by name (success, failure and
    stopped callbacks, webhooks, dependencies, repeats, rate limits, groups) is ignored however the hash says
    otherwise: bench-jobs sets none of them, and a "made by bench-jobs" marker would not help, since whoever
    can write the hash can write the marker too."""

    def perform(self) -> Any:
        if self.func_name != JOB_FUNCTION or self.instance is not None or self.args:
            raise JobError(f"Refused to run {self.func_name!r}: bench-jobs workers run only {JOB_FUNCTION} jobs.")
        return super().perform()

    _payload_problem: str | None = None

    def _deserialize_data(self) -> None:
        """RQ's, with a reason a user can read in show-failed-jobs (RQ's error has no message)."""
        if self._payload_problem:
            raise DeserializationError(f"Job {self.id} is not run: {self._payload_problem}")
        try:
            super()._deserialize_data()  # type: ignore[no-untyped-call]
        except DeserializationError as exc:
            cause = exc.__cause__
            raise DeserializationError(
                f"Job {self.id} is no bench-jobs job and is not run: its payload is not JSON "
                f"({type(cause).__name__}: {cause})"
            ) from cause

    # RQ would import and call whatever its callback fields name. bench-jobs never writes them: a job's
    # on_success/on_failure travel in the JSON payload and run_job checks them against the site's apps.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def set_status(self, status: JobStatus, pipeline: Any = None) -> None:
        """RQ's, and a finished or failed status also counts the outcome (jobs/throughput.py) on the same
        pipeline: the worker's success and failure paths and RQ's abandoned-job cleanup all pass here."""
        super().set_status(status, pipeline=pipeline)
        if status in (JobStatus.FINISHED, JobStatus.FAILED) and ":" in (self.origin or ""):
            bench_id = bench_id_of(self.origin)
            owner = owner_of_job_id(self.id)
            site = owner[1] if owner and owner[0] == bench_id else None
            target = pipeline if pipeline is not None else self.connection
            count_outcome(target, bench_id, site, queue_of(self.origin), status == JobStatus.FINISHED, time.time())

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        """RQ's hash, plus the few small fields listings show (site, method, job name, event: brief.py), so a
        listing never reads the payload. Only for a job whose arguments are in memory (one being made): a
        job restored from Redis keeps the fields it has, and its payload is not parsed again to save it."""
        fields: dict[str, Any] = super().to_dict(include_meta=include_meta, include_result=include_result)
        if isinstance(self._kwargs, dict):
            fields.update(summary_fields(self._kwargs))
        return fields

    def dependencies_are_met(self, *args: Any, **kwargs: Any) -> bool:
        """Never: bench-jobs jobs depend on none, so one named in a dependents set is never made ready (even by
        a plain RQ queue that fetches it as a BenchJob)."""
        return False

    def restore(self, raw_data: Any) -> Any:
        """RQ's, but the payload is inflated here with a cap (RQ's zlib.decompress has none, so a forged hash
        of 1 MB could make a worker or a listing hold gigabytes): RQ is handed a placeholder instead, and a
        payload over the cap fails the job with its reason when it would run (and is never inflated)."""
        fields = dict(raw_data)
        key = next((k for k in (b"data", "data") if k in fields), None)
        payload = fields.get(key) if key is not None else None
        if key is not None:
            fields[key] = b""  # not zlib: RQ keeps it as it is
        restored = super().restore(fields)
        if isinstance(payload, (bytes, str)):
            self._payload_problem = None
            try:
                self.data = inflate(payload.encode() if isinstance(payload, str) else payload)
            except PayloadTooLarge as exc:
                self._payload_problem = exc.message
        if isinstance(self.description, str):  # RQ's worker logs it: a forged newline would forge a log line
            self.description = one_line(self.description, BRIEF_CHARS)
        self._forget_named_features()
        if self.failure_ttl is None:
            self.failure_ttl = bench_failure_ttl_s()
        return restored

    def _forget_named_features(self) -> None:
        """Drop what RQ read from the hash that would make a worker import, call, fetch or enqueue by name."""
        self._success_callback_name = self._failure_callback_name = self._stopped_callback_name = None
        self._success_callback_timeout = self._failure_callback_timeout = self._stopped_callback_timeout = None
        self.webhooks = []
        self._dependency_ids = []
        self.allow_dependency_failures = None
        self.repeats_left = None
        self.repeat_intervals = None
        self.rate_limit_key = None
        self.rate_limit_concurrency = None
        self.group_id = None


def bench_failure_ttl_s() -> int | None:
    from ..core.config import load_bench_settings
    from ..core.context import bench_in_use

    bench = bench_in_use()
    return load_bench_settings(bench).failure_ttl_s if bench else None
