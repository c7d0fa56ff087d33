"""Delayed jobs: enqueue_at and enqueue_in keep a job in its queue's scheduled registry until its time.

The job is saved with status `scheduled` and its due time (epoch seconds, with the fraction: RQ truncates to
the second, which would run a job up to a second early) as its score, in the same pipelined round trip as any
enqueue, and one idle worker is woken to wait for that time. Every worker's take loop moves due jobs onto their
queue with one atomic script (worker/due.py), so a delayed job runs once, within about a second of its time,
and survives any worker being killed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import JobError
from .enqueue import EnqueueOptions, _callback_path, _enqueue, method_path, settings_for_site


def due_epoch_s(when: datetime) -> float:
    """The epoch seconds of an aware `when`; JobError for a naive datetime (its meaning would depend on the
    machine's time zone) or anything else."""
    if not isinstance(when, datetime):
        raise JobError(
            f"when must be a datetime, not {type(when).__name__}.",
            hint="Pass an aware datetime to enqueue_at, or seconds to enqueue_in.",
        )
    if when.tzinfo is None or when.utcoffset() is None:
        raise JobError(
            f"when={when.isoformat()} has no time zone, so its moment depends on the machine that reads it.",
            hint="Pass an aware datetime, e.g. datetime.now(timezone.utc) + timedelta(hours=1), "
            "or datetime(2030, 1, 1, 9, 0, tzinfo=ZoneInfo('Europe/Berlin')).",
        )
    return when.timestamp()


def due_after(delay: float | timedelta, now: datetime) -> datetime:
    """`now` plus `delay` (seconds, or a timedelta); JobError for anything else, NaN or infinities."""
    if isinstance(delay, timedelta):
        return now + delay
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay):
        raise JobError(
            f"delay must be seconds (a number) or a timedelta, not {delay!r}.",
            hint="e.g. enqueue_in(90, ...) or enqueue_in(timedelta(minutes=5), ...).",
        )
    return now + timedelta(seconds=delay)


def enqueue_at(
    when: datetime,
    method: str | Callable[..., Any],
    queue: str = "default",
    timeout: int | None = None,
    job_name: str | None = None,
    enqueue_after_commit: bool = False,
    at_front: bool = False,
    job_id: str | None = None,
    deduplicate: bool = False,
    retry: int = 0,
    now: bool = False,
    site: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    event: str | None = None,
    is_async: bool = True,
    on_success: str | Callable[..., Any] | None = None,
    on_failure: str | Callable[..., Any] | None = None,
    **more_kwargs: Any,
) -> Any:
    """Queue `method(**kwargs)` for a site to run at `when`, an aware datetime (a naive one raises JobError).
    Takes enqueue's keywords; returns the RQ job (status `scheduled`), or None when deduplicated or deferred
    to a commit. A `when` at or before now queues the job at once, as enqueue. With job_id + deduplicate, a
    job of that id queued, scheduled or running makes this a no-op; at_front puts the job at the head of its
    queue when it falls due. now=True / is_async=False are refused: a job run now cannot also be delayed."""
    due_s = due_epoch_s(when)
    if now or not is_async:
        raise JobError(
            "A delayed job cannot also run now (now=True or is_async=False).",
            hint="Use bench_jobs.enqueue(..., now=True) to run it inline, or drop now= to delay it.",
        )
    options = EnqueueOptions(
        queue,
        timeout,
        job_name,
        enqueue_after_commit,
        at_front,
        job_id,
        deduplicate,
        retry,
        False,
        event,
        _callback_path(on_success),
        _callback_path(on_failure),
    )
    settings = settings_for_site(site)
    call_kwargs = {**(kwargs or {}), **more_kwargs}
    # Compared with this machine's clock, as the workers compare the score with theirs.
    future = due_s > datetime.now(timezone.utc).timestamp()
    return _enqueue(settings, method_path(method), call_kwargs, options, due_s=due_s if future else None)


def enqueue_in(delay: float | timedelta, method: str | Callable[..., Any], **options: Any) -> Any:
    """enqueue_at(now + `delay`, ...): `delay` in seconds (int or float) or a timedelta; 0 or less queues the
    job at once. Takes every keyword of enqueue_at."""
    return enqueue_at(due_after(delay, datetime.now(timezone.utc)), method, **options)
