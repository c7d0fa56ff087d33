"""What a worker does before it serves: import every app of every site once (hooks, job modules, all their
submodules), so that no job, in a reused or a fresh work-horse, pays an app's import."""

from __future__ import annotations

import importlib
import pkgutil

from ..core.bench import Bench
from ..core.config import load_site_settings
from ..core.hooks import load_site_hooks
from ..core.keys import JOB_FUNCTION
from ..errors import BenchJobsError


def preload_apps(bench: Bench) -> list[str]:
    """Import every app of every site (hooks, job modules, all submodules) once, so forked jobs pay no
    import cost; returns a line per problem instead of stopping."""
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
