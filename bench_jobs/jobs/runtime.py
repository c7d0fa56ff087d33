"""What runs inside a site: `execute`, and `run_job`, the one function every bench-jobs RQ job calls."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.bench import Bench
from ..core.context import SiteContext, active_bench, call_with_job_hooks, current_context, site_context, site_hooks
from ..core.hooks import (
    SiteHooks,
    foreign_job_hook,
    foreign_reason,
    import_path,
    is_doc_method_name,
    site_app_callable,
)
from ..errors import ConfigError, JobError
from .history import record_outcome

JOB_LOG = "jobs.log"


def execute_in_site(bench: Bench, site: str, path: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Call `path` for `site` with before/after_job hooks; JobError (exit 1) carrying the cause if it raises."""
    with site_context(site, bench) as context:
        hooks = site_hooks(context)
        hooks.raise_problems()
        foreign_hook = foreign_job_hook(hooks, context.settings.apps, site)
        if foreign_hook:
            raise ConfigError(
                f"Refused to run the job hooks of site {site}: {foreign_hook}.",
                hint="before_job/after_job hooks must be functions defined in the site's apps.",
            )
        func = import_path(path)
        try:
            return call_with_job_hooks(hooks, func, args, kwargs)
        except Exception as exc:
            raise JobError(
                f"{path} raised {type(exc).__name__}: {exc}", hint="Run again with --verbose for the traceback."
            ) from exc


def run_job(
    site: str,
    method: str,
    kwargs: Mapping[str, Any] | None = None,
    job_name: str | None = None,
    event: str | None = None,
    doc: Mapping[str, str] | None = None,
    **_: Any,
) -> Any:
    """Run one job for `site`: refuse a method (or a before/after_job hook, or an enqueue_doc loader and
    method) not defined inside the site's apps, then before_job, the method, after_job (also after an
    exception), and a line in the site's job log. Exceptions propagate to RQ."""
    context = current_context()
    bench = context.bench if context else active_bench()
    with site_context(site, bench) as ctx:
        apps = ctx.settings.apps
        try:
            target = site_app_callable(method, apps, site)
        except JobError as exc:
            raise JobError(f"Refused to run {method!r}: {exc.message}.") from None
        hooks = site_hooks(ctx)
        broken = [p for p in hooks.problems if p.event in ("before_job", "after_job")]
        if broken:
            raise JobError(f"Refused to run {method!r}: broken hook: {broken[0]}")
        foreign_hook = foreign_job_hook(hooks, apps, site)
        if foreign_hook:
            raise JobError(f"Refused to run {method!r}: {foreign_hook}.")
        if doc:
            target = _doc_method(target, method, doc, hooks, ctx)
        started = time.monotonic()
        if event:
            record_outcome(ctx.settings, event, method, "started")
        try:
            result = call_with_job_hooks(hooks, target, (), kwargs or {})
        except BaseException as exc:
            _log_run(ctx, method, job_name, event, "failed", started, f"{type(exc).__name__}: {exc}")
            raise
        _log_run(ctx, method, job_name, event, "finished", started, None)
        return result


def _doc_method(
    loader: Callable[..., Any], path: str, doc: Mapping[str, str], hooks: SiteHooks, ctx: SiteContext
) -> Any:
    """The bound method an enqueue_doc job runs: `path` must be a doc_types loader of the site's apps and the
    method a public one defined in those apps (a payload cannot pick `__reduce__` or an inherited built-in)."""
    name = doc.get("method")
    if path not in hooks.doc_types.values():
        raise JobError(f"Refused to run {path!r}: it is not a doc_types loader of site {ctx.site}.")
    if not is_doc_method_name(name):
        raise JobError(f"Refused to run {path!r}: {name!r} is not a public method name.")
    bound = getattr(loader(doc["name"]), str(name))
    reason = foreign_reason(bound, ctx.settings.apps, ctx.site)
    if reason:
        raise JobError(f"Refused to run {path}({doc['name']!r}).{name}: {reason}.")
    return bound


def job_log_path(bench: Bench, site: str) -> Path:
    return bench.logs_dir / site / JOB_LOG


def _log_run(
    ctx: SiteContext,
    method: str,
    job_name: str | None,
    event: str | None,
    status: str,
    started: float,
    error: str | None,
) -> None:
    """Append one JSON line to logs/<site>/jobs.log (one write, so concurrent workers never interleave)."""
    from rq import get_current_job

    job = get_current_job()
    record = {
        "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "job_id": job.id if job else None,
        "method": method,
        "job_name": job_name,
        "event": event,
        "status": status,
        "duration_s": round(time.monotonic() - started, 6),
        "error": error,
    }
    if event:
        record_outcome(ctx.settings, event, method, status, time.monotonic() - started, error)
    path = job_log_path(ctx.bench, ctx.site)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
