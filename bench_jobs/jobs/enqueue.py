"""On-demand jobs: enqueue, enqueue_doc, and transactions that send jobs only on commit."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, NamedTuple

import redis
from rq import Queue
from rq.job import Job, Retry

from ..core.allowlist import check_site_app_method, is_doc_method_name
from ..core.config import SiteSettings, load_site_settings
from ..core.connection import connect
from ..core.context import active_bench, current_context
from ..core.keys import JOB_FUNCTION, job_id_for, new_job_id
from ..core.text import one_line
from ..errors import ConfigError, JobError
from .brief import BRIEF_CHARS
from .push import PendingJob, send
from .queues import rq_queue

DEFAULT_RETRY_INTERVALS_S = (10, 60, 300, 900, 3600)


def method_path(method: str | Callable[..., Any]) -> str:
    """A dotted path for `method` (a path already, or a module-level function)."""
    if isinstance(method, str):
        return method
    module, name = getattr(method, "__module__", None), getattr(method, "__qualname__", "")
    if not module or module == "__main__" or "<" in name or "." in name:
        raise JobError(
            f"{method!r} has no importable dotted path.", hint="Pass the path as a string, e.g. 'my_app.tasks.send'."
        )
    return f"{module}.{name}"


def ensure_json(kwargs: Mapping[str, Any], job: Job | None = None) -> None:
    """Raise JobError naming the first argument that JSON cannot carry (NaN and infinities included: Python
    writes them as NaN / Infinity, which is not JSON). With `job`, its own serialisation (which RQ caches
    and saves) is the check, so the happy path serialises once."""
    try:
        if job is not None:
            data = job.data  # serialises the payload now, and caches it for the save
            if b"NaN" not in data and b"Infinity" not in data:
                return
        json.dumps(kwargs, allow_nan=False)
        return
    except (TypeError, ValueError):
        pass
    for name, value in kwargs.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise JobError(
                f"Argument {name!r} ({type(value).__name__}) is not JSON-serialisable (or holds NaN or Infinity).",
                hint="Pass IDs, not objects: the job loads what it needs by ID.",
            ) from None
    raise JobError("The job's arguments are not JSON-serialisable.", hint="Pass IDs, not objects.")


_SETTINGS_RECHECK_S = 1.0  # enqueue looks at the config files at most once a second per site
_recent_settings: dict[tuple[str, str], tuple[float, SiteSettings]] = {}


def settings_for_site(site: str | None) -> SiteSettings:
    """The settings of `site`, else of the current site context (JobError when there is neither)."""
    context = current_context()
    if site is None:
        if context is not None:
            return context.settings
        site = _default_site()
    if context is not None and context.site == site:
        return context.settings
    bench = context.bench if context else active_bench()
    key, now = (str(bench.root), site), time.monotonic()
    recent = _recent_settings.get(key)
    if recent is None or now - recent[0] > _SETTINGS_RECHECK_S:
        recent = _recent_settings[key] = (now, load_site_settings(bench, site))
    return recent[1]


def _default_site() -> str:
    """The site the CLI would use without --site: $BENCH_JOBS_SITE, then sites/currentsite.txt (never `all`)."""
    from ..core.bench import ALL_SITES

    hint = (
        "Pass site='name', call inside bench_jobs.site_context(name), set $BENCH_JOBS_SITE or write the name "
        "to sites/currentsite.txt."
    )
    try:
        name = active_bench().default_site()
    except ConfigError:  # no bench to read currentsite.txt from
        name = None
    if not name:
        raise JobError("No site to enqueue for.", hint=hint)
    if name == ALL_SITES:
        raise JobError("No site to enqueue for: the default site is 'all', and a job runs for one site.", hint=hint)
    return name


def _retry(settings: SiteSettings, retries: int) -> Retry | None:
    if retries <= 0:
        return None
    intervals = list(settings.bench.common.get("retry_intervals", DEFAULT_RETRY_INTERVALS_S))
    return Retry(max=retries, interval=intervals[:retries])


def build_job(
    conn: redis.Redis,
    settings: SiteSettings,
    method: str,
    kwargs: Mapping[str, Any],
    *,
    queue: str = "default",
    timeout_s: int | None = None,
    job_name: str | None = None,
    rq_job_id: str | None = None,
    event: str | None = None,
    retry: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Queue, Job]:
    """The RQ job that runs `method` for a site: one bench-jobs function with a JSON payload."""
    rq_q = rq_queue(conn, settings.bench, queue)
    payload = {
        "site": settings.name,
        "method": method,
        "kwargs": dict(kwargs),
        "job_name": job_name,
        "event": event,
        **(extra or {}),
    }
    job = rq_q.create_job(
        JOB_FUNCTION,
        kwargs=payload,
        timeout=timeout_s or settings.bench.queue(queue).timeout_s,
        job_id=rq_job_id or new_job_id(settings.bench.bench_id, settings.name),
        description=one_line(job_name or method, BRIEF_CHARS),
        retry=_retry(settings, retry),
    )
    return rq_q, job


# Transactions: a stack of job lists per context; the outermost commit sends everything in one round trip.
_pending: ContextVar[tuple[list[PendingJob], ...]] = ContextVar("bench_jobs_pending", default=())
_after_commit_handler: Callable[[Callable[[], None]], None] | None = None


def begin() -> None:
    """Start a (possibly nested) transaction: after-commit jobs wait for the matching commit()."""
    _pending.set((*_pending.get(), []))


def commit() -> list[Job | None]:
    """End the innermost transaction; the outermost one sends every waiting job in one round trip."""
    stack = _pending.get()
    if not stack:
        raise JobError("commit() without begin().", hint="Use `with bench_jobs.transaction():`.")
    *outer, innermost = stack
    if outer:
        outer[-1].extend(innermost)
        _pending.set(tuple(outer))
        return []
    _pending.set(())
    if not innermost:
        return []
    return send(innermost[0].queue.connection, innermost)


def rollback() -> int:
    """End the innermost transaction, dropping its after-commit jobs; returns how many were dropped."""
    stack = _pending.get()
    if not stack:
        raise JobError("rollback() without begin().", hint="Use `with bench_jobs.transaction():`.")
    _pending.set(stack[:-1])
    return len(stack[-1])


@contextlib.contextmanager
def transaction() -> Iterator[None]:
    """Jobs enqueued with enqueue_after_commit=True inside the block go out when it ends without raising."""
    begin()
    try:
        yield
    except BaseException:
        rollback()
        raise
    commit()


def set_after_commit_handler(handler: Callable[[Callable[[], None]], None] | None) -> None:
    """Tie enqueue_after_commit to an app's own database: `handler(callback)` must run `callback` after the
    app's transaction commits (Django: `django.db.transaction.on_commit`). Used outside bench_jobs.transaction()."""
    global _after_commit_handler
    _after_commit_handler = handler


class EnqueueOptions(NamedTuple):  # a tuple: built on every enqueue, and cheaper than a dataclass
    queue: str = "default"
    timeout: int | None = None
    job_name: str | None = None
    enqueue_after_commit: bool = False
    at_front: bool = False
    job_id: str | None = None
    deduplicate: bool = False
    retry: int = 0
    now: bool = False
    event: str | None = None
    on_success: str | None = None
    on_failure: str | None = None


def enqueue(
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
    """Queue `method(**kwargs)` for a site; returns the RQ job, None when deduplicated or deferred to a
    commit, or the method's result with now=True. Raises JobError/ConfigError at once for bad input.

    Frappe's keywords: `is_async=False` runs now like now=True; `event` labels the job (job log, listings,
    `purge-jobs --event`) and is not passed to the method; `on_success(job, connection, result)` and
    `on_failure(job, connection, exc_type, exc_value, traceback)` are dotted paths or module-level
    functions of the site's apps, called by the worker after the job (not for a job run now)."""
    options = EnqueueOptions(
        queue,
        timeout,
        job_name,
        enqueue_after_commit,
        at_front,
        job_id,
        deduplicate,
        retry,
        now or not is_async,
        event,
        _callback_path(on_success),
        _callback_path(on_failure),
    )
    return _enqueue(settings_for_site(site), method_path(method), {**(kwargs or {}), **more_kwargs}, options)


def _callback_path(callback: str | Callable[..., Any] | None) -> str | None:
    return None if callback is None else method_path(callback)


def enqueue_doc(
    doctype: str,
    name: str,
    method: str,
    queue: str = "default",
    timeout: int | None = None,
    site: str | None = None,
    **kwargs: Any,
) -> Any:
    """Queue `method` of the document `doctype`/`name`, which the worker loads with the apps' `doc_types`.
    The queue's timeout applies unless `timeout` is given; `enqueue` options may be passed as keywords."""
    from ..core.hooks import load_site_hooks

    settings = settings_for_site(site)
    loaders = load_site_hooks(settings.apps, settings.bench.queues, import_methods=False).doc_types
    if doctype not in loaders:
        raise JobError(
            f"Unknown doctype {doctype!r} for site {settings.name}.",
            hint=f"Doc types of its apps: {', '.join(sorted(loaders)) or 'none'} (doc_types in hooks.py).",
        )
    if not is_doc_method_name(method):
        raise JobError(
            f"Cannot enqueue {doctype} {name}: {method!r} is not a public method name.",
            hint="Name a method of the document's class, e.g. 'submit' (names starting with _ are refused).",
        )
    chosen = {key: kwargs.pop(key) for key in _OPTION_NAMES if key in kwargs}
    chosen.setdefault("job_name", f"{doctype} {name}: {method}")
    if not kwargs.pop("is_async", True):
        chosen["now"] = True
    for key in ("on_success", "on_failure"):
        chosen[key] = _callback_path(chosen.get(key))
    options = EnqueueOptions(queue=queue, timeout=timeout, **chosen)  # type: ignore[arg-type]
    doc = {"doctype": doctype, "name": name, "method": method}
    return _enqueue(settings, loaders[doctype], kwargs, options, doc=doc)


_OPTION_NAMES = (
    "job_name",
    "enqueue_after_commit",
    "at_front",
    "job_id",
    "deduplicate",
    "retry",
    "now",
    "event",
    "on_success",
    "on_failure",
)


def _enqueue(
    settings: SiteSettings,
    path: str,
    call_kwargs: dict[str, Any],
    options: EnqueueOptions,
    doc: dict[str, str] | None = None,
    due_s: float | None = None,
) -> Any:
    """Check, build and send (or hold for the commit) one job; with `due_s` (epoch s), scheduled for then."""
    settings.bench.queue(options.queue)
    try:
        check_site_app_method(path, settings.apps, settings.name)
    except (ConfigError, JobError) as exc:
        raise JobError(
            f"Cannot enqueue {path!r}: {exc.message.rstrip('.')}.",
            hint=exc.hint
            or "Workers run only functions and classes defined in the site's apps; add the app to `apps` "
            "in the site's config, or enqueue the app's own function instead of a name it imported.",
        ) from None
    timeout = options.timeout
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
        raise JobError(f"timeout must be whole seconds greater than 0, not {timeout!r}.")
    retry = options.retry
    if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
        raise JobError(f"retry must be a whole number of retries (0 or more), not {retry!r}.", hint="e.g. retry=3")
    if options.deduplicate and not options.job_id:
        raise JobError("deduplicate=True needs a job_id.", hint="Pass job_id='...' naming the work to deduplicate.")
    if options.event is not None and not isinstance(options.event, str):
        raise JobError(f"event must be a string, not {type(options.event).__name__}.")
    callbacks = {
        name: value for name, value in (("on_success", options.on_success), ("on_failure", options.on_failure)) if value
    }
    for name, callback in callbacks.items():
        try:
            check_site_app_method(callback, settings.apps, settings.name)
        except (ConfigError, JobError) as exc:
            raise JobError(
                f"{name} {callback}: {exc.message.rstrip('.')}.",
                hint="Callbacks run in the worker like the job: only functions of the site's apps.",
            ) from None
    if options.now:
        from .runtime import run_job

        ensure_json(call_kwargs)
        return run_job(
            site=settings.name, method=path, kwargs=call_kwargs, job_name=options.job_name, event=options.event, doc=doc
        )
    conn = connect(settings.bench)
    rq_job_id = job_id_for(settings.bench.bench_id, settings.name, options.job_id) if options.job_id else None
    rq_q, job = build_job(
        conn,
        settings,
        path,
        call_kwargs,
        queue=options.queue,
        timeout_s=timeout,
        job_name=options.job_name,
        rq_job_id=rq_job_id,
        event=options.event,
        retry=options.retry,
        extra={**({"doc": doc} if doc else {}), **callbacks} or None,
    )
    ensure_json(call_kwargs, job)
    refuse = bool(options.job_id) and not options.deduplicate
    pending = PendingJob(rq_q, job, options.at_front, options.deduplicate, refuse, due_s)
    return submit(pending, after_commit=options.enqueue_after_commit)


def submit(item: PendingJob, after_commit: bool = False) -> Job | None:
    """Send one built job now, or hold it for the current transaction's commit."""
    if after_commit:
        stack = _pending.get()
        if stack:
            stack[-1].append(item)
            return None
        if _after_commit_handler is not None:

            def send_on_commit() -> None:
                send(item.queue.connection, [item])

            _after_commit_handler(send_on_commit)
            return None
    return send(item.queue.connection, [item])[0]
