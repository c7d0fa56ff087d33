"""What a worker does before it serves: import every app of every site once (hooks, job modules, all their
submodules), so that no job, in a reused or a fresh work-horse, pays an app's import; and the stamp of the code
it imported (the newest modification time of the apps' files), which the worker records for `doctor`."""

from __future__ import annotations

import importlib
import pkgutil

from ..core.app_files import bench_sources, newest_mtime_ns
from ..core.bench import Bench
from ..core.config import load_site_settings
from ..core.hooks import load_site_hooks
from ..core.keys import JOB_FUNCTION
from ..errors import BenchJobsError

_loaded_code_ns: int | None = None  # set by preload_apps: the stamp of the code this process imported


def loaded_code_ns(bench: Bench) -> int:
    """The newest modification time (ns) of the app files this process imported, as read just before
    preload_apps imported them (a file saved during the imports then counts as newer: the cautious side); in
    a process that did not preload, the files' as they were at the first call."""
    global _loaded_code_ns
    if _loaded_code_ns is None:
        _loaded_code_ns = newest_mtime_ns(bench_sources(bench))
    return _loaded_code_ns


def preload_apps(bench: Bench) -> list[str]:
    """Import every app of every site (hooks, job modules, all submodules) once, so forked jobs pay no
    import cost; returns a line per problem instead of stopping."""
    global _loaded_code_ns
    _loaded_code_ns = newest_mtime_ns(bench_sources(bench))  # before the first import of any app
    problems: list[str] = []
    apps: dict[str, None] = {}
    for site in bench.site_names():
        try:
            settings = load_site_settings(bench, site)
        except BenchJobsError as exc:
            problems.append(f"{site}: {exc.message}")
            continue
        hooks = load_site_hooks(settings.apps, settings.bench.queues)
        problems += [f"{site}: {problem}" for problem in hooks.problems]
        apps.update(dict.fromkeys(settings.apps))
    for app in apps:
        problems += _import_package(app)
    importlib.import_module(JOB_FUNCTION.rpartition(".")[0])  # what every forked job runs
    return list(dict.fromkeys(problems))


def _import_package(app: str) -> list[str]:
    try:
        package = importlib.import_module(app)
    except Exception as exc:
        return [f"{app}: cannot import: {exc}"]
    problems = []
    for module in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{app}."):
        leaf = module.name.rsplit(".", 1)[1]
        if leaf == "tests" or leaf.startswith("test_") or ".tests." in module.name:
            continue
        try:
            importlib.import_module(module.name)
        except Exception as exc:
            problems.append(f"{module.name}: cannot import: {type(exc).__name__}: {exc}")
    return problems
