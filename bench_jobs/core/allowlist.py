"""What may run for a site: the allow-list that enqueue, the worker, `trigger-scheduler-event` and `execute`
share. A callable may run only when its dotted path is inside one of the site's apps and so is the module
that defines it (its `__module__`), so a name an app merely imported (`from os import system`) is refused.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, JobError
from .hooks import SiteHooks, import_path, on_forget_hooks


def in_site_apps(method: str, apps: tuple[str, ...]) -> bool:
    """True when the dotted path `method` (or a module name) is inside one of the site's apps: the first,
    import-free half of `site_app_callable`, which says what a worker may run for that site."""
    return method in apps or method.startswith(_app_prefixes(apps))


def defining_module(target: object) -> str | None:
    """The module that defines `target`: a function's or class's own, a bound method's function's, else the
    module of its type (a callable instance, a functools.partial). None when it has none (some built-ins)."""
    if inspect.ismethod(target):
        target = target.__func__
    if inspect.isroutine(target) or inspect.isclass(target):
        module = getattr(target, "__module__", None)
    else:
        module = type(target).__module__
    return module if isinstance(module, str) else None


def foreign_reason(target: object, apps: tuple[str, ...], site: str) -> str | None:
    """Why `target` may not run for `site` (it is defined outside the site's apps), or None when it may."""
    module = defining_module(target)
    if module is not None and in_site_apps(module, apps):
        return None
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    where = f"{module}.{name}" if module else f"the built-in {name}"
    return f"it is {where}, defined outside the apps of site {site} ({', '.join(apps) or 'none'})"


def site_app_callable(path: str, apps: tuple[str, ...], site: str) -> Callable[..., Any]:
    """The callable `path` names, when it may run for `site`: its path is inside one of the site's apps and
    so is the module that defines it (its `__module__`), so a name an app merely imported (`from os import
    system`) is refused. Raises JobError saying why it is refused (nothing outside the apps is imported), or
    ConfigError when it does not import. The one check of enqueue, the worker and trigger-scheduler-event."""
    if not isinstance(path, str) or not in_site_apps(path, apps):
        raise JobError(f"it is not inside the apps of site {site} ({', '.join(apps) or 'none'})")
    target = import_path(path)
    reason = foreign_reason(target, apps, site)
    if reason:
        raise JobError(reason)
    return target


def is_doc_method_name(name: object) -> bool:
    """What enqueue_doc may name as the document's method: a public identifier, never a dunder or a private
    name (`__reduce__`, `_delete`), so a payload cannot reach past the document's own API."""
    return isinstance(name, str) and name.isidentifier() and not name.startswith("_")


def foreign_job_hook(hooks: SiteHooks, apps: tuple[str, ...], site: str) -> str | None:
    """The first before_job/after_job hook of `hooks` that may not run for `site` (same rule as a job's
    method), described with why; None when all may."""
    for kind, paths in (("before_job", hooks.before_job), ("after_job", hooks.after_job)):
        for path in paths:
            try:
                check_site_app_method(path, apps, site)
            except (ConfigError, JobError) as exc:
                return f"{kind} hook {path!r}: {exc.message.rstrip('.')}"
    return None


_allowed: set[tuple[str, tuple[str, ...]]] = set()
on_forget_hooks(_allowed.clear)


def check_site_app_method(path: str, apps: tuple[str, ...], site: str) -> None:
    """`site_app_callable` for callers that need only the verdict (enqueue): an allowed (path, apps) is
    remembered for the process, so a hot enqueue loop imports and inspects once; refusals are not cached."""
    if (path, apps) in _allowed:
        return
    site_app_callable(path, apps, site)
    _allowed.add((path, apps))


@functools.lru_cache(maxsize=256)
def _app_prefixes(apps: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{app}." for app in apps)
