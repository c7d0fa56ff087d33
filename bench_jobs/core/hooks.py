"""Loading apps' `hooks` modules: scheduler_events into validated job specs, before/after_job, doc_types.

A broken app, path or cron string becomes a HookProblem naming the app, the event and the value; it never
hides the other apps' or events' jobs.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .bench import add_bench_apps_to_path as add_bench_apps_to_path  # it lives with the bench; importers keep this path
from .cron import EVENT_CRONS, site_event_cron
from .cron_syntax import cron_problem

LONG_QUEUE = "long"
DEFAULT_QUEUE = "default"
CRON_EVENTS = ("cron", "cron_long")
MAINTENANCE_EVENTS = ("hourly_maintenance", "daily_maintenance")
KNOWN_EVENTS = (
    *EVENT_CRONS,
    *(f"{event}_long" for event in EVENT_CRONS if event not in MAINTENANCE_EVENTS),
    *CRON_EVENTS,
)
_DOTTED_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class ScheduledJob:
    """One scheduled job of an app. `cron` is Frappe's CRON_MAP entry for a named event until for_site()
    places `all` by the bench's scheduler_interval and the maintenance events at the site's offset."""

    app: str
    event: str
    method: str
    cron: str
    queue: str
    timeout_s: int | None = None

    @property
    def key(self) -> str:
        """Stable identity of the job within a site: event, cron as the hooks write it, and method (so a new
        scheduler_interval or a site's maintenance offset does not make it a new job)."""
        written = self.cron if self.event in CRON_EVENTS else EVENT_CRONS[self.event.removesuffix("_long")]
        return f"{self.event}|{written}|{self.method}"

    def for_site(self, site: str, scheduler_interval_s: int) -> ScheduledJob:
        """This job with the cron it runs on in `site`."""
        cron = site_event_cron(self.event, self.cron, site, scheduler_interval_s)
        return self if cron == self.cron else dataclasses.replace(self, cron=cron)


@dataclass(frozen=True)
class HookProblem:
    app: str
    event: str
    value: str
    message: str

    def __str__(self) -> str:
        where = f"{self.app}.hooks" + (f" {self.event}" if self.event else "")
        return f"{where}: {self.value}: {self.message}"


@dataclass(frozen=True)
class AppHooks:
    app: str
    scheduled: tuple[ScheduledJob, ...] = ()
    before_job: tuple[str, ...] = ()
    after_job: tuple[str, ...] = ()
    doc_types: dict[str, str] = field(default_factory=dict)
    problems: tuple[HookProblem, ...] = ()


@dataclass(frozen=True)
class SiteHooks:
    """The hooks of every app of one site, in the order the apps are listed."""

    apps: tuple[AppHooks, ...]

    @property
    def scheduled(self) -> list[ScheduledJob]:
        return [job for app in self.apps for job in app.scheduled]

    @property
    def before_job(self) -> list[str]:
        return [path for app in self.apps for path in app.before_job]

    @property
    def after_job(self) -> list[str]:
        return [path for app in self.apps for path in app.after_job]

    @property
    def doc_types(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for app in self.apps:
            merged.update(app.doc_types)
        return merged

    @property
    def problems(self) -> list[HookProblem]:
        return [problem for app in self.apps for problem in app.problems]

    def raise_problems(self) -> None:
        """Raise ConfigError naming the first problem (and how many more) when any hook is broken."""
        problems = self.problems
        if problems:
            more = f" (and {len(problems) - 1} more problem(s); run doctor to see all)" if len(problems) > 1 else ""
            raise ConfigError(f"Broken hook: {problems[0]}{more}", hint="Fix the app's hooks.py.")


def import_path(path: str) -> Callable[..., Any]:
    """The callable that a dotted path names; ConfigError saying what is wrong otherwise."""
    if not isinstance(path, str) or not _DOTTED_PATH.fullmatch(path):
        raise ConfigError(f"{path!r} is not a dotted path to a function.", hint="Write it as package.module.function.")
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"Cannot import {path!r}: no module named {exc.name!r}.",
                hint="Check the spelling and that the app is installed or in the bench's apps/.",
            ) from None
        raise ConfigError(f"Cannot import {path!r}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(
            f"Cannot import {path!r}: importing {module_name} raised {type(exc).__name__}: {exc}"
        ) from exc
    target = getattr(module, attribute, None)
    if target is None or not callable(target):
        raise ConfigError(f"Cannot import {path!r}: {module_name} has no function {attribute!r}.")
    return target  # type: ignore[no-any-return]


def _required_parameters(func: Callable[..., Any]) -> list[str]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    return [
        name
        for name, parameter in signature.parameters.items()
        if parameter.default is inspect.Parameter.empty
        and parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]


class _AppLoader:
    """Turns one app's hooks module into an AppHooks, collecting problems instead of stopping."""

    def __init__(self, app: str, import_methods: bool) -> None:
        self.app = app
        self.import_methods = import_methods
        self.problems: list[HookProblem] = []

    def problem(self, event: str, value: object, message: str) -> None:
        self.problems.append(HookProblem(self.app, event, value if isinstance(value, str) else repr(value), message))

    def check_method(self, event: str, path: object, scheduled: bool) -> bool:
        if not isinstance(path, str) or not _DOTTED_PATH.fullmatch(path):
            self.problem(event, path, "not a dotted path to a function (package.module.function)")
            return False
        if not self.import_methods:
            return True
        try:
            func = import_path(path)
        except ConfigError as exc:
            self.problem(event, path, exc.message)
            return False
        required = _required_parameters(func)
        if scheduled and required:
            self.problem(
                event, path, f"a scheduled job takes no required argument, this one needs {', '.join(required)}"
            )
            return False
        return True

    def scheduled_entry(self, event: str, entry: object, cron: str, queue: str) -> ScheduledJob | None:
        timeout_s = None
        if isinstance(entry, dict):
            unknown = set(entry) - {"method", "queue", "timeout"}
            if unknown or "method" not in entry:
                self.problem(event, entry, "a table entry has keys method (required), queue and timeout")
                return None
            method, queue, timeout_s = entry["method"], entry.get("queue", queue), entry.get("timeout")
            if not isinstance(queue, str) or not queue:
                self.problem(event, entry, "queue must be a queue name")
                return None
            if timeout_s is not None and (
                not isinstance(timeout_s, int) or isinstance(timeout_s, bool) or timeout_s <= 0
            ):
                self.problem(event, entry, "timeout must be whole seconds greater than 0")
                return None
        else:
            method = entry
        if not self.check_method(event, method, scheduled=True):
            return None
        assert isinstance(method, str)
        return ScheduledJob(self.app, event, method, cron, queue, timeout_s)

    def entries(self, event: str, value: object) -> list[object]:
        """A hook's list; a single value stands for a list of one, as in Frappe's hook loader."""
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, (str, dict)):
            return [value]
        self.problem(event, value, "expected a method path or a list of them")
        return []

    def scheduler_events(self, events: object) -> list[ScheduledJob]:
        if not isinstance(events, dict):
            self.problem("scheduler_events", events, "scheduler_events must be a dict of event to list")
            return []
        jobs: list[ScheduledJob] = []
        for event, value in events.items():
            if event not in KNOWN_EVENTS:
                self.problem(event, event, f"unknown event; known events: {', '.join(KNOWN_EVENTS)}")
                continue
            queue = LONG_QUEUE if event.endswith("_long") or event in MAINTENANCE_EVENTS else DEFAULT_QUEUE
            if event in CRON_EVENTS:
                if not isinstance(value, dict):
                    self.problem(event, value, 'expected {"<cron string>": [method paths]}')
                    continue
                for cron, entries in value.items():
                    reason = cron_problem(cron)
                    if reason:
                        self.problem(event, cron, reason)
                        continue
                    jobs.extend(
                        filter(
                            None, (self.scheduled_entry(event, e, cron, queue) for e in self.entries(event, entries))
                        )
                    )
            else:
                cron = EVENT_CRONS[event.removesuffix("_long")]
                jobs.extend(
                    filter(None, (self.scheduled_entry(event, e, cron, queue) for e in self.entries(event, value)))
                )
        return jobs

    def paths(self, name: str, value: object) -> tuple[str, ...]:
        return tuple(p for p in self.entries(name, value) if self.check_method(name, p, scheduled=False))  # type: ignore[misc]

    def doc_types(self, value: object) -> dict[str, str]:
        if not isinstance(value, dict):
            self.problem("doc_types", value, 'expected {"DocType": "package.module.loader"}')
            return {}
        return {
            doctype: path for doctype, path in value.items() if self.check_method("doc_types", path, scheduled=False)
        }

    def load(self) -> AppHooks:
        try:
            module = importlib.import_module(f"{self.app}.hooks")
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing in (self.app, f"{self.app}.hooks"):
                message = f"cannot import {missing}: the app is not installed and not in the bench's apps/"
            else:
                message = f"importing {self.app}.hooks failed: {exc}"
            return AppHooks(self.app, problems=(HookProblem(self.app, "", f"{self.app}.hooks", message),))
        except Exception as exc:
            return AppHooks(
                self.app,
                problems=(
                    HookProblem(self.app, "", f"{self.app}.hooks", f"importing raised {type(exc).__name__}: {exc}"),
                ),
            )
        scheduled = self.scheduler_events(getattr(module, "scheduler_events", {}))
        return AppHooks(
            self.app,
            scheduled=tuple(scheduled),
            before_job=self.paths("before_job", getattr(module, "before_job", ())),
            after_job=self.paths("after_job", getattr(module, "after_job", ())),
            doc_types=self.doc_types(getattr(module, "doc_types", {})),
            problems=tuple(self.problems),
        )


_app_cache: dict[tuple[str, bool], AppHooks] = {}


def load_app_hooks(app: str, import_methods: bool = True) -> AppHooks:
    """One app's hooks, loaded once per process. `import_methods=False` checks paths by shape only
    (the scheduler tick needs the specs, not the job modules)."""
    key = (app, import_methods)
    if key not in _app_cache:
        _app_cache[key] = _AppLoader(app, import_methods).load()
    return _app_cache[key]


def load_site_hooks(apps: Sequence[str], queues: Iterable[str], import_methods: bool = True) -> SiteHooks:
    """The hooks of a site's apps; a scheduled job naming a queue the bench does not have is a problem."""
    known = set(queues)
    loaded = []
    for app in apps:
        hooks = load_app_hooks(app, import_methods)
        bad = [job for job in hooks.scheduled if job.queue not in known]
        if bad:
            extra = tuple(
                HookProblem(
                    app, job.event, job.method, f"unknown queue {job.queue!r}; known queues: {', '.join(sorted(known))}"
                )
                for job in bad
            )
            hooks = AppHooks(
                app,
                tuple(j for j in hooks.scheduled if j not in bad),
                hooks.before_job,
                hooks.after_job,
                hooks.doc_types,
                hooks.problems + extra,
            )
        loaded.append(hooks)
    return SiteHooks(tuple(loaded))


def forget_loaded_hooks() -> None:
    """Drop the per-process caches (tests, and a long-running process told to reload)."""
    _app_cache.clear()
    for callback in _forget_callbacks:
        callback()


_forget_callbacks: list[Callable[[], None]] = []


def on_forget_hooks(callback: Callable[[], None]) -> None:
    """Have `forget_loaded_hooks` also call `callback` (the allow-list's cache of verdicts)."""
    _forget_callbacks.append(callback)
