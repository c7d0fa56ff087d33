"""Fixtures: a real redis-server started by this test session (never the developer's), temporary benches."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from support import RedisServer, kill_tree, make_bench, start_cli, start_redis, wait_for

from bench_jobs.core import config, context, hooks
from bench_jobs.core import connection as redis_conn
from bench_jobs.core.bench import Bench


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    # Jobs the tests mark as started must start after Redis did by a whole second of its uptime, or they count
    # as started before a restart still in its grace (liveness.py) and are not judged orphaned.
    wait_for(lambda: int(server.client().info("server")["uptime_in_seconds"]) >= 1, 5, "Redis uptime of 1 s")
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's Redis, flushed before and after the test."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture(autouse=True)
def _fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("BENCH_JOBS_BENCH", "BENCH_JOBS_SITE", config.REDIS_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(context, "_default_bench", None)
    yield
    hooks.forget_loaded_hooks()
    redis_conn.forget_connections()
    for module in [m for m in sys.modules if m.split(".")[0] in ("sample_app", "other_app", "migrated_app")]:
        del sys.modules[module]


@pytest.fixture
def bench(tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis) -> Bench:
    return make_bench(tmp_path / "bench", redis_server.url)


@pytest.fixture
def restarted_bench(tmp_path: Path) -> Iterator[Bench]:
    """A bench on a redis-server of its own that has just started: as after a restart, within the grace in
    which a missing alive key says nothing about a job started before (liveness.py)."""
    server = start_redis(tmp_path / "restarted-redis")
    try:
        yield make_bench(tmp_path / "bench", server.url)
    finally:
        server.stop()


@pytest.fixture
def workers(bench: Bench) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `bench-jobs worker` processes in their own process groups; kill leftovers at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        started.append(start_cli(bench, "worker", *args))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            kill_tree(process)
