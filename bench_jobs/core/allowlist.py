"""What may run for a site: the allow-list that enqueue, the worker, `trigger-scheduler-event` and `execute`
share. A callable may run only when its dotted path is inside one of the site's apps and so is the code that
calling it runs: a name an app merely imported (`from os import system`), a class of an app that inherits its
constructor (`class AppLog(logging.FileHandler)`), a functools.partial or a callable instance whose __call__
is another library's are refused.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, JobError
from .hooks import SiteHooks, import_path, on_forget_hooks

# Classes whose __new__, __init__ or metaclass __call__ run no code of their own: plain construction.
_TRIVIAL_OWNERS = (object, type)
_BUILT_IN_ROUTINES = (
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)


def in_site_apps(method: str, apps: tuple[str, ...]) -> bool:
    """True when the dotted path `method` (or a module name) is inside one of the site's apps: the first,
    import-free half of `site_app_callable`, which says what a worker may run for that site."""
    return method in apps or method.startswith(_app_prefixes(apps))


def _owner(cls: type, name: str) -> type | None:
    """The class of `cls`'s MRO whose own namespace defines `name`: whose code runs for `cls.name`."""
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


def _describe(module: object, name: str) -> str:
    return f"{module}.{name}" if isinstance(module, str) else f"the built-in {name}"


def _foreign_member(cls: type, name: str, apps: tuple[str, ...]) -> str | None:
    """`cls.name` as it will run (found through the MRO), described when it is not the apps' own code: a
    class outside the apps, or a function of another module assigned in an app's class. None when it is."""
    owner = _owner(cls, name)
    if owner is None or owner in _TRIVIAL_OWNERS:
        return None
    member = vars(owner)[name]
    function = getattr(member, "__func__", member)  # __new__ is a staticmethod in the class's namespace
    where = _describe(owner.__module__, f"{owner.__qualname__}.{name}")
    if not in_site_apps(owner.__module__, apps):
        return where
    if isinstance(function, types.FunctionType):
        return (
            None if in_site_apps(function.__module__, apps) else _describe(function.__module__, function.__qualname__)
        )
    return where  # a built-in slot or descriptor assigned in an app's class: not the app's code


def foreign_code(target: object, apps: tuple[str, ...]) -> str | None:
    """What of the code that calling `target` runs is defined outside `apps`, or None when it is all theirs.

    Judged by what will actually run, not by where the name was found: a function (or a bound method's
    function) by its module; a class by its metaclass's __call__ and the __new__ and __init__ its MRO
    resolves to (an app class that inherits logging.FileHandler's constructor runs logging's code); any
    other callable (a callable instance, functools.partial, a staticmethod object) by the __call__ its
    type resolves to; a built-in function (`from os import system`) by its own module, never an app's."""
    if inspect.ismethod(target):
        target = target.__func__
    if isinstance(target, types.FunctionType):
        module = target.__module__
        return None if in_site_apps(module, apps) else _describe(module, target.__qualname__)
    if inspect.isclass(target):
        name = _describe(target.__module__, target.__qualname__)
        if not in_site_apps(target.__module__, apps):
            return name
        meta = _foreign_member(type(target), "__call__", apps)
        if meta:
            return f"{name}, whose metaclass's __call__ is {meta}"
        for dunder in ("__new__", "__init__"):
            member = _foreign_member(target, dunder, apps)
            if member:
                return f"{name}, whose {dunder} is {member}"
        return None
    if isinstance(target, _BUILT_IN_ROUTINES):
        home: object = getattr(target, "__module__", None)
        if isinstance(home, str) and in_site_apps(home, apps):
            return None  # a compiled (C or Cython) function of an app's own module
        return _describe(home, str(getattr(target, "__qualname__", type(target).__qualname__)))
    kind = type(target)
    if not in_site_apps(kind.__module__, apps):
        return _describe(kind.__module__, kind.__qualname__)
    call = _foreign_member(kind, "__call__", apps)
    return f"a {kind.__module__}.{kind.__qualname__} object, whose __call__ is {call}" if call else None


def foreign_reason(target: object, apps: tuple[str, ...], site: str) -> str | None:
    """Why `target` may not run for `site` (code it runs is defined outside the site's apps), or None."""
    foreign = foreign_code(target, apps)
    if foreign is None:
        return None
    return f"it is {foreign}, defined outside the apps of site {site} ({', '.join(apps) or 'none'})"


def site_app_callable(path: str, apps: tuple[str, ...], site: str) -> Callable[..., Any]:
    """The callable `path` names, when it may run for `site`: its path is inside one of the site's apps and
    so is the code calling it runs (foreign_code), so a name an app merely imported (`from os import
    system`) or a class with an inherited constructor is refused. Raises JobError saying why it is refused
    (nothing outside the apps is imported), or
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
