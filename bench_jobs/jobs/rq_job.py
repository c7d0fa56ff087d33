"""The RQ job class of every bench-jobs queue and worker."""

from __future__ import annotations

from typing import Any

from rq.job import Job

from ..core.keys import JOB_FUNCTION
from ..errors import JobError


class BenchJob(Job):
    """An RQ job that runs only bench-jobs' own entry point, so a payload written into Redis by someone else
    that names any other function (`os.system`, say) fails without anything being called, and RQ's callback
    fields, which import by name, are never read; a failed job
    is kept for the bench's `job_failure_ttl` (read once per process, not stored in every job)."""

    def perform(self) -> Any:
        if self.func_name != JOB_FUNCTION or self.instance is not None or self.args:
            raise JobError(f"Refused to run {self.func_name!r}: bench-jobs workers run only {JOB_FUNCTION} jobs.")
        return super().perform()

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

    def restore(self, raw_data: Any) -> Any:
        restored = super().restore(raw_data)
        if self.failure_ttl is None:
            self.failure_ttl = _bench_failure_ttl_s()
        return restored


def _bench_failure_ttl_s() -> int | None:
    from ..core.config import load_bench_settings
    from ..core.context import bench_in_use

    bench = bench_in_use()
    return load_bench_settings(bench).failure_ttl_s if bench else None
