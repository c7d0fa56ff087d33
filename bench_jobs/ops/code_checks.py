"""doctor's `stale-code` check: a live worker runs the app code it imported as it started, so a file edited (or
added) since then is not what its jobs run until the worker restarts."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import redis
from rq import Worker

from ..core.app_files import app_roots, bench_apps, source_mtimes
from ..core.bench import Bench
from ..core.config import BenchSettings
from ..jobs.listings import QueueStats, queue_stats
from ..jobs.liveness import LOADED_CODE_FIELD
from .checks import Check
from .code_watch import shown
from .process_configs import unit_prefix

SHOWN_WORKERS = 5  # workers named for each changed file; the rest are counted
FILES_FRESH_S = 30.0  # how long a walk of the apps' files is reused (the dashboard's refreshes)
_files_cache: dict[str, tuple[float, dict[Path, tuple[str, int]]]] = {}


def stale_hint(settings: BenchSettings) -> str:
    prefix = unit_prefix(settings)
    return (
        "Restart those workers and the scheduler to run the code on disk (running jobs finish first): "
        "`bench-jobs start` reloads them by itself when a file changes; in production restart them with the "
        f"process manager: `supervisorctl restart '{prefix}:*'` or `systemctl restart {prefix}.target`."
    )


def stale_code_check(
    conn: redis.Redis, bench: Bench, settings: BenchSettings, now: datetime, stats: list[QueueStats] | None = None
) -> Check:
    """A warning naming each live worker that imported its apps before one of their files (on this host's disk)
    last changed, with the newest such file and its app. Workers that recorded no stamp (older versions) are
    left out. `stats`: the queues' counts when the caller has read them (queue_stats), else read here."""
    every_stats = queue_stats(conn, settings, now) if stats is None else stats
    names = sorted({name for row in every_stats for name in row.workers})
    with conn.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(Worker.redis_worker_namespace_prefix + name, LOADED_CODE_FIELD, "hostname", "pid")
        rows = cast(list[list[Any]], pipe.execute())
    stamped = {
        name: (int(stamp), _text(host), _text(pid))
        for name, (stamp, host, pid) in zip(names, rows, strict=True)
        if stamp
    }
    files = _app_files(bench)
    by_age = sorted(files, key=lambda path: files[path][1], reverse=True)  # newest first
    stale: dict[tuple[Path, int], list[str]] = {}  # the newest file changed since a worker loaded -> workers
    for name, (stamp_ns, host, pid) in stamped.items():
        newer = 0
        while newer < len(by_age) and files[by_age[newer]][1] > stamp_ns:
            newer += 1
        if newer:
            stale.setdefault((by_age[0], newer), []).append(f"{name} (pid {pid} on {host})")
    if not stale:
        return Check(
            "stale-code",
            True,
            f"{len(stamped)} live worker(s) run the app code on disk ({len(files)} file(s) of the apps)",
        )
    found = []
    for (path, count), workers in stale.items():
        app, mtime_ns = files[path]
        more = f" (and {count - 1} more file(s))" if count > 1 else ""
        shown_workers = ", ".join(workers[:SHOWN_WORKERS]) + (
            f" (+{len(workers) - SHOWN_WORKERS} more)" if len(workers) > SHOWN_WORKERS else ""
        )
        found.append(
            f"{app}: {shown(bench, path)} changed at {_utc(mtime_ns)}{more}, after {len(workers)} live worker(s) "
            f"loaded their code: {shown_workers}"
        )
    detail = "; ".join(found)
    return Check("stale-code", True, detail, stale_hint(settings), warning=True)


def _app_files(bench: Bench) -> dict[Path, tuple[str, int]]:
    """Each app source file -> (its app, its mtime in ns), walked at most once per FILES_FRESH_S in a process:
    the dashboard runs doctor's checks on every refresh, and a big app has thousands of files."""
    key = str(bench.root)
    cached = _files_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < FILES_FRESH_S:
        return cached[1]
    files = {
        path: (app, mtime_ns)
        for app, root in app_roots(bench, bench_apps(bench)).items()
        for path, mtime_ns in source_mtimes([root]).items()
    }
    _files_cache[key] = (time.monotonic(), files)
    return files


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _utc(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
