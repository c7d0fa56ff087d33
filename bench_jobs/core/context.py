"""The site context that jobs, `execute` and before/after_job hooks run in."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import BenchJobsError
from .bench import Bench, add_bench_apps_to_path, find_bench
from .config import SiteSettings, load_site_settings

if TYPE_CHECKING:  # hooks (and the cron modules it needs) load when a site's hooks are read: show-queue never does
    from .hooks import SiteHooks


@dataclass(frozen=True)
class SiteContext:
    bench: Bench
    settings: SiteSettings

    @property
    def site(self) -> str:
        return self.settings.name


_current: ContextVar[SiteContext | None] = ContextVar("bench_jobs_site", default=None)
_default_bench: Bench | None = None


def use_bench(bench: Bench) -> None:
    """Make `bench` the one `site_context(name)` opens sites of (the CLI and workers call this)."""
    global _default_bench
    _default_bench = bench
    add_bench_apps_to_path(bench.apps_dir)


def bench_in_use() -> Bench | None:
    """The bench set by `use_bench`, if any (never looks for one)."""
    return _default_bench


def active_bench() -> Bench:
    """The bench set by `use_bench`, else the one found from $BENCH_JOBS_BENCH or the working directory."""
    if _default_bench is None:
        use_bench(find_bench())
    assert _default_bench is not None
    return _default_bench


def current_context() -> SiteContext | None:
    return _current.get()


def current_site() -> str | None:
    """The name of the site this code runs for, or None outside any site."""
    context = _current.get()
    return context.site if context else None


def site_config() -> Mapping[str, Any]:
    """The current site's merged config (common over defaults, site over common)."""
    context = _current.get()
    if context is None:
        raise BenchJobsError("No site context.", hint="Wrap the call in `with bench_jobs.site_context(name):`.")
    return context.settings.values


@contextlib.contextmanager
def site_context(site: str, bench: Bench | None = None) -> Iterator[SiteContext]:
    """Run the block for `site`: `current_site()`, `site_config()` and `enqueue` default to it."""
    bench = bench or active_bench()
    add_bench_apps_to_path(bench.apps_dir)
    context = SiteContext(bench, load_site_settings(bench, site))
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def site_hooks(context: SiteContext, import_methods: bool = True) -> SiteHooks:
    from .hooks import load_site_hooks

    return load_site_hooks(context.settings.apps, context.settings.bench.queues, import_methods)


JOB_TRANSACTION = "job"  # Frappe's `transaction_type` for hooks around a background job


def call_accepting(func: Callable[..., Any], offered: Mapping[str, Any]) -> Any:
    """Call `func` with the keywords of `offered` that its signature accepts (all of them when it takes
    **kwargs), as Frappe's `frappe.call` does for hooks: a hook declares only what it needs."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        return func()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return func(**offered)
    named = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return func(**{name: value for name, value in offered.items() if name in named})


def call_with_job_hooks(
    hooks: SiteHooks,
    func: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    method: str,
    transaction_type: str = JOB_TRANSACTION,
) -> Any:
    """`before_job` hooks, then `func`, then `after_job` hooks (also when `func` raised, with result=None).

    Hooks get Frappe's keywords, each only those it accepts: `method` (the dotted path), `kwargs` (the
    call's keyword arguments), `transaction_type`, and for `after_job` also `result`."""
    from .hooks import import_path

    offered: dict[str, Any] = {"method": method, "kwargs": kwargs, "transaction_type": transaction_type}
    for path in hooks.before_job:
        call_accepting(import_path(path), offered)
    result = None
    try:
        result = func(*args, **kwargs)
        return result
    finally:
        for path in hooks.after_job:
            call_accepting(import_path(path), {**offered, "result": result})


class _SiteFileRouter(logging.Handler):
    """Writes each record to `logs/<site>/<name>.log` for the site current when it is logged."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.log_name = name
        self.files: dict[str, logging.FileHandler] = {}

    def emit(self, record: logging.LogRecord) -> None:
        context = _current.get()
        if context is None:
            return
        handler = self.files.get(context.site)
        if handler is None:
            folder = context.bench.logs_dir / context.site
            folder.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(folder / f"{self.log_name}.log", encoding="utf-8")
            handler.setFormatter(self.formatter)
            self.files[context.site] = handler
        handler.emit(record)


_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(site)s] %(message)s"


class _SiteField(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.site = current_site() or "-"
        return True


def logger(name: str) -> logging.Logger:
    """A logger writing to the bench's `logs/<name>.log` and the current site's `logs/<site>/<name>.log`."""
    log = logging.getLogger(f"bench_jobs.app.{name}")
    if getattr(log, "_bench_jobs_ready", False):
        return log
    bench = active_bench()
    bench.logs_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(_LOG_FORMAT)
    bench_file = logging.FileHandler(bench.logs_dir / f"{name}.log", encoding="utf-8")
    router = _SiteFileRouter(name)
    for handler in (bench_file, router):
        handler.setFormatter(formatter)
        handler.addFilter(_SiteField())
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log._bench_jobs_ready = True  # type: ignore[attr-defined]
    return log
