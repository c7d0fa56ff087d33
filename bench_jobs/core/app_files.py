"""The source files of a bench's apps, the ones a worker imports as it starts: what `start` watches to reload its
workers, and what `doctor` compares with the code each live worker loaded (the newest modification time of
these files when the worker started)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import BenchJobsError
from .bench import Bench
from .config import load_site_settings
from .hooks import add_bench_apps_to_path


def bench_apps(bench: Bench) -> list[str]:
    """Every app of every site of the bench, in first-seen order (a worker serves them all); a site whose config
    does not load is left out (doctor and the worker's preload name it)."""
    apps: dict[str, None] = {}
    for site in bench.site_names():
        try:
            apps.update(dict.fromkeys(load_site_settings(bench, site).apps))
        except BenchJobsError:
            continue
    return list(apps)


def app_roots(bench: Bench, apps: Iterable[str]) -> dict[str, Path]:
    """Each app's package folder (or module file) as an import would find it, without importing it; an app that
    cannot be found is left out."""
    add_bench_apps_to_path(bench.apps_dir)
    roots = {}
    for app in apps:
        try:
            spec = importlib.util.find_spec(app)
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            roots[app] = Path(next(iter(spec.submodule_search_locations)))
        elif spec.origin and spec.origin.endswith(".py"):
            roots[app] = Path(spec.origin)
    return roots


def source_mtimes(roots: Iterable[Path]) -> dict[Path, int]:
    """Each app source file -> its modification time in ns: the .py files of the packages a worker's preload
    imports (packages with an __init__.py, without `tests` packages or `test_*` modules, as it skips them)."""
    found: dict[Path, int] = {}
    for root in roots:
        if root.is_file():
            _add(found, root)
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(
                name
                for name in subfolders
                if name != "tests" and not name.startswith(".") and (Path(folder, name, "__init__.py")).is_file()
            )
            for name in sorted(files):
                if name.endswith(".py") and not name.startswith("test_"):
                    _add(found, Path(folder, name))
    return found


def bench_sources(bench: Bench) -> dict[Path, int]:
    """The source files of every app of the bench -> their modification times in ns."""
    return source_mtimes(app_roots(bench, bench_apps(bench)).values())


def newest_mtime_ns(sources: dict[Path, int]) -> int:
    """The newest modification time among `sources` (0 for none): the code stamp a worker records."""
    return max(sources.values(), default=0)


def _add(found: dict[Path, int], path: Path) -> None:
    with contextlib.suppress(OSError):  # removed between the listing and the stat
        found[path] = path.stat().st_mtime_ns
