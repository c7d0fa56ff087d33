"""What runs inside a site: `execute`, and `run_job`, the one function every bench-jobs RQ job calls."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.allowlist import foreign_job_hook, foreign_reason, is_doc_method_name, site_app_callable
from ..core.bench import Bench
from ..core.context import SiteContext, active_bench, call_with_job_hooks, current_context, site_context, site_hooks
from ..core.hooks import KNOWN_EVENTS, HookProblem, SiteHooks, import_path
from ..errors import ConfigError, JobError
from .history import record_outcome

JOB_LOG = "jobs.log"


JOB_HOOK_EVENTS = ("before_job", "after_job")


@dataclass(frozen=True)
class Executed:
    """What `execute` got: the function's result, and the site's hook problems that did not stop it."""

    result: Any
    warnings: tuple[str, ...] = ()


def broken_job_hooks(hooks: SiteHooks) -> list[HookProblem]:
    """The problems that make a site's jobs unsafe to run: a broken `before_job`/`after_job` path, or an app
    whose hooks module does not import (its before/after_job hooks are unknown). Other hook problems
    (a scheduled path, a cron string) are the scheduler's and doctor's business, not a job's."""
    return [problem for problem in hooks.problems if problem.event in (*JOB_HOOK_EVENTS, "")]


def execute_in_site(bench: Bench, site: str, path: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Executed:
    """Call `path` for `site` with before/after_job hooks, as a worker runs a job: ConfigError (exit 2) when
    the site's job hooks are broken, JobError (exit 1) carrying the cause if the function raises. Other hook
    problems come back as warnings. The hooks see `transaction_type="job"`: the only value a Frappe
    before/after_job hook is ever given, so a hook that branches on it treats `execute` like the inline job
    it is."""
    with site_context(site, bench) as context:
        hooks = site_hooks(context)
        broken = broken_job_hooks(hooks)
        if broken:
            more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
            raise ConfigError(
                f"Refused to run {path!r} for site {site}: broken hook: {broken[0]}{more}",
                hint="Fix the app's before_job/after_job in hooks.py; `bench-jobs doctor` lists every hook problem.",
            )
        foreign_hook = foreign_job_hook(hooks, context.settings.apps, site)
        if foreign_hook:
            raise ConfigError(
                f"Refused to run the job hooks of site {site}: {foreign_hook}.",
                hint="before_job/after_job hooks must be functions defined in the site's apps.",
            )
        warnings = tuple(str(problem) for problem in hooks.problems)
        func = import_path(path)
        try:
            return Executed(call_with_job_hooks(hooks, func, args, dict(kwargs), path), warnings)
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
    on_success: str | None = None,
    on_failure: str | None = None,
    **_: Any,
) -> Any:
    """Run one job for `site`: refuse a method (or a before/after_job hook, an enqueue_doc loader and method,
    or an on_success/on_failure callback) not defined inside the site's apps, then before_job, the method,
    after_job (also after an exception), the job's callback, and a line in the site's job log. Exceptions
    propagate to RQ."""
    from rq import get_current_job

    fields = {"site": site, "method": method, "kwargs": kwargs, "job_name": job_name, "event": event}
    wrong = payload_type_problem({**fields, "doc": doc, "on_success": on_success, "on_failure": on_failure})
    if wrong:
        raise JobError(f"Refused to run the job: {wrong}.")
    context = current_context()
    bench = context.bench if context else active_bench()
    with site_context(site, bench) as ctx:
        apps = ctx.settings.apps
        job = get_current_job()
        started = time.monotonic()
        scheduled = event in KNOWN_EVENTS  # an enqueue's own event is not the scheduler's history
        try:
            target, hooks = _allowed_target(method, doc, ctx)
            succeeded = _callback(on_success, "on_success", method, apps, site) if job else None
            failed = _callback(on_failure, "on_failure", method, apps, site) if job else None
        except JobError as exc:  # refused before running: the job log says so too, as a failed run
            _log_run(ctx, method, job_name, event, scheduled, "failed", started, exc.message)
            raise
        if scheduled and event:
            record_outcome(ctx.settings, event, method, "started")
        try:
            try:
                result = call_with_job_hooks(hooks, target, (), dict(kwargs or {}), method)
                if succeeded is not None and job is not None:
                    succeeded(job, job.connection, result)
            except Exception as exc:
                if failed is not None and job is not None:
                    # As in RQ, a failure callback that raises makes its error the job's (chained to this one).
                    failed(job, job.connection, type(exc), exc, exc.__traceback__)
                raise
        except BaseException as exc:
            _log_run(ctx, method, job_name, event, scheduled, "failed", started, f"{type(exc).__name__}: {exc}")
            raise
        _log_run(ctx, method, job_name, event, scheduled, "finished", started, None)
        return result


_PAYLOAD_TYPES: dict[str, tuple[type, ...]] = {
    "site": (str,),
    "method": (str,),
    "kwargs": (dict, type(None)),
    "job_name": (str, type(None)),
    "event": (str, type(None)),
    "doc": (dict, type(None)),
    "on_success": (str, type(None)),
    "on_failure": (str, type(None)),
}


def payload_type_problem(fields: Mapping[str, Any]) -> str | None:
    """What of a job's payload has the wrong type (a forged `method` that is a list, say), or None: checked
    before anything of it is used, so a forged payload fails with its reason instead of a TypeError."""
    for name, value in fields.items():
        allowed = _PAYLOAD_TYPES.get(name)
        if allowed is not None and not isinstance(value, allowed):
            return f"its payload's {name!r} is a {type(value).__name__}"
    doc = fields.get("doc")
    if isinstance(doc, dict) and not all(isinstance(doc.get(key), str) for key in ("name", "method")):
        return "its payload's 'doc' needs a string 'name' and 'method'"
    return None


def _allowed_target(method: str, doc: Mapping[str, str] | None, ctx: SiteContext) -> tuple[Any, SiteHooks]:
    """What the job calls and the site's hooks; JobError ("Refused to run ...") when the method, a
    before/after_job hook or an enqueue_doc loader is not defined inside the site's apps, or a hook is broken."""
    apps, site = ctx.settings.apps, ctx.site
    try:
        target = site_app_callable(method, apps, site)
    except JobError as exc:
        raise JobError(f"Refused to run {method!r}: {exc.message}.") from None
    hooks = site_hooks(ctx)
    broken = broken_job_hooks(hooks)
    if broken:
        raise JobError(f"Refused to run {method!r}: broken hook: {broken[0]}")
    foreign_hook = foreign_job_hook(hooks, apps, site)
    if foreign_hook:
        raise JobError(f"Refused to run {method!r}: {foreign_hook}.")
    if doc:
        target = _doc_method(target, method, doc, hooks, ctx)
    return target, hooks


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


def _callback(path: str | None, name: str, method: str, apps: tuple[str, ...], site: str) -> Callable[..., Any] | None:
    """The job's on_success/on_failure function, refused (JobError) unless it is defined inside the site's
    apps: the payload in Redis names it, so a forged one must not reach any other function."""
    if path is None:
        return None
    try:
        return site_app_callable(path, apps, site)
    except JobError as exc:
        raise JobError(f"Refused to run {method!r}: its {name} callback: {exc.message}.") from None


def job_log_path(bench: Bench, site: str) -> Path:
    return bench.logs_dir / site / JOB_LOG


def _log_run(
    ctx: SiteContext,
    method: str,
    job_name: str | None,
    event: str | None,
    scheduled: bool,
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
    if scheduled and event:
        record_outcome(ctx.settings, event, method, status, time.monotonic() - started, error)
    path = job_log_path(ctx.bench, ctx.site)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
