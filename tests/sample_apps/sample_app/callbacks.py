"""on_success/on_failure callbacks with Frappe's (RQ's) arguments, leaving a trace like the tasks do."""

from __future__ import annotations

from os import system as system  # a path inside the app to a function defined outside it
from pathlib import Path
from types import TracebackType
from typing import Any

from .tasks import record


def succeeded(job: Any, connection: Any, result: Any) -> None:
    record("on_success", job_id=job.id, result=result, connection=type(connection).__name__)


def failed(
    job: Any, connection: Any, exc_type: type[BaseException], exc_value: BaseException, tb: TracebackType | None
) -> None:
    record(
        "on_failure",
        job_id=job.id,
        error=f"{exc_type.__name__}: {exc_value}",
        traceback=tb is not None,
        connection=type(connection).__name__,
    )


def broken_success(job: Any, connection: Any, result: Any) -> None:
    record("broken_success", job_id=job.id)
    raise RuntimeError("on_success broke")


def touch_marker(job: Any, connection: Any, *args: Any) -> None:
    """Leaves a file wherever the job's `marker` argument says, inside a site context or not."""
    Path(job.kwargs["kwargs"]["marker"]).touch()
