"""The bench's Redis keeps queued jobs: `start`'s Redis and the Procfile's keep an append-only file under
the bench, and `doctor` warns when a Redis keeps nothing (DESIGN 7)."""

from __future__ import annotations

import _thread
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support import RedisServer, make_bench, run_cli, start_redis, wait_for
from test_doctor import beat

import bench_jobs
from bench_jobs.core import connection as redis_conn
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.ops import local_redis
from bench_jobs.ops.local_redis import LocalRedis, local_address, start_local_redis
from bench_jobs.ops.process_configs import procfile_text

QUEUE_KEY = "rq:queue:testbench:default"
DATA_DIR = "redis"  # the folder under the bench that holds its Redis's append-only file (README: Operations)


def start_like_start(bench: Bench) -> LocalRedis:
    """The bench's Redis started as `bench-jobs start` starts it when none answers."""
    url = bench_url(bench)
    address = local_address(url)
    assert address is not None
    return start_local_redis(bench, url, address)


def bench_url(bench: Bench) -> str:
    return bench.common_config_path.read_text().split('redis_queue = "')[1].split('"')[0]


def client_of(bench: Bench) -> redis.Redis:
    return redis.Redis.from_url(bench_url(bench))


def enqueue_jobs(bench: Bench, count: int) -> list[str]:
    use_bench(bench)
    ids = [bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"r{n}", site="alpha.test").id for n in range(count)]
    redis_conn.forget_connections()
    return ids


def queued_ids(bench: Bench) -> list[str]:
    client = client_of(bench)
    try:
        return [
            member.decode() for member in client.lrange(QUEUE_KEY, 0, -1) if client.exists(f"rq:job:{member.decode()}")
        ]
    finally:
        client.close()


@pytest.fixture
def socket_bench(tmp_path: Path) -> Bench:
    """A bench whose redis_queue is a unix socket where nothing answers yet: `start` would run its own."""
    return make_bench(tmp_path / "bench", f"unix://{tmp_path}/sock/redis.sock")


@pytest.fixture
def started() -> Iterator[list[LocalRedis]]:
    """Local Redis servers a test started; SIGKILLed at the end if still running."""
    servers: list[LocalRedis] = []
    yield servers
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)


def test_start_redis_keeps_queued_jobs_across_a_stop_and_restart(
    socket_bench: Bench, started: list[LocalRedis]
) -> None:
    started.append(start_like_start(socket_bench))
    ids = enqueue_jobs(socket_bench, 3)
    assert started[0].stop() == 0  # what `start` does after Ctrl-C or SIGTERM

    started.append(start_like_start(socket_bench))
    assert queued_ids(socket_bench) == ids
    data = socket_bench.root / DATA_DIR
    assert data.is_dir() and any(data.iterdir()), "the append-only file lives in <bench>/redis/"
    assert not any(path.name.startswith(("appendonly", "dump")) for path in socket_bench.sites_dir.rglob("*"))
    client = client_of(socket_bench)
    config = {name: client.config_get(name)[name] for name in ("appendonly", "appendfsync", "save", "dir")}
    assert config == {"appendonly": "yes", "appendfsync": "everysec", "save": "", "dir": str(data)}


def test_start_redis_keeps_jobs_enqueued_a_second_before_a_kill_9(
    socket_bench: Bench, started: list[LocalRedis]
) -> None:
    started.append(start_like_start(socket_bench))
    ids = enqueue_jobs(socket_bench, 3)
    time.sleep(1.5)  # appendfsync everysec: what is older than a second is on disk
    started[0].process.send_signal(signal.SIGKILL)
    assert started[0].process.wait(10) == -signal.SIGKILL

    started.append(start_like_start(socket_bench))
    assert queued_ids(socket_bench) == ids


def slow_loading(bench: Bench, started: list[LocalRedis], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Jobs in an append-only file that takes ~3 s to load (Redis's key-load-delay: 50 ms a key), more than
    the start timeout, here 1 s; returns their ids."""
    started.append(start_like_start(bench))
    ids = enqueue_jobs(bench, 3)
    client = client_of(bench)
    client.mset({f"filler-{n}": "x" for n in range(60)})
    client.bgrewriteaof()  # the keys go into the file's RDB part, where the delay applies
    wait_for(
        lambda: (
            not any(client.info("persistence")[key] for key in ("aof_rewrite_in_progress", "aof_rewrite_scheduled"))
        ),
        10,
        "the append-only file rewrite",
    )
    assert started[0].stop() == 0
    real_args = local_redis.redis_server_args
    monkeypatch.setattr(
        local_redis, "redis_server_args", lambda *args: [*real_args(*args), "--key-load-delay", "50000"]
    )
    monkeypatch.setattr(local_redis, "START_TIMEOUT_S", 1.0)
    return ids


def test_start_waits_for_redis_to_load_a_big_append_only_file(
    socket_bench: Bench, started: list[LocalRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = slow_loading(socket_bench, started, monkeypatch)
    began = time.monotonic()
    started.append(start_like_start(socket_bench))
    assert time.monotonic() - began > 2, "the load outlasted the start timeout"
    assert queued_ids(socket_bench) == ids


def test_ctrl_c_while_redis_loads_stops_that_redis(
    socket_bench: Bench, started: list[LocalRedis], monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_loading(socket_bench, started, monkeypatch)
    socket = str(socket_bench.root.parent / "sock")  # in redis-server's title, which replaces its command line
    ctrl_c = threading.Timer(1.5, _thread.interrupt_main)  # start's SIGINT handler raises KeyboardInterrupt
    ctrl_c.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            start_like_start(socket_bench)
    finally:
        ctrl_c.cancel()
    leftovers = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and socket in _cmdline(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], "the Redis being loaded was left running"


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_the_procfile_redis_creates_its_folder_and_keeps_queued_jobs(socket_bench: Bench) -> None:
    (line,) = [line for line in procfile_text(socket_bench).splitlines() if line.startswith("redis: ")]
    assert "--appendonly yes --appendfsync everysec" in line
    assert not (socket_bench.root / DATA_DIR).exists()
    (socket_bench.root.parent / "sock").mkdir()

    def run_procfile_redis() -> subprocess.Popen[bytes]:
        # as honcho runs a Procfile line: through a shell, in the bench folder
        process = subprocess.Popen(["/bin/sh", "-c", line.removeprefix("redis: ")], cwd=socket_bench.root)
        wait_for(lambda: _answers(socket_bench), 10, "the Procfile's Redis")
        return process

    process = run_procfile_redis()
    try:
        ids = enqueue_jobs(socket_bench, 2)
        process.terminate()  # honcho's stop
        assert process.wait(10) == 0
        process = run_procfile_redis()
        assert queued_ids(socket_bench) == ids
        assert any((socket_bench.root / DATA_DIR).iterdir())
    finally:
        process.terminate()
        process.wait(10)


def _answers(bench: Bench) -> bool:
    try:
        return bool(client_of(bench).ping())
    except redis.ConnectionError:
        return False


def test_the_procfile_example_redis_keeps_an_append_only_file() -> None:
    example = (Path(__file__).resolve().parent.parent / "Procfile.example").read_text()
    (line,) = [line for line in example.splitlines() if line.startswith("redis: ")]
    words = shlex.split(line.removeprefix("redis: "))
    assert words[:3] == ["mkdir", "-p", DATA_DIR]
    assert "--appendonly yes --appendfsync everysec" in line and f"--dir {DATA_DIR}" in line


@pytest.fixture
def persistence_bench(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Bench, RedisServer]]:
    """A bench on a redis-server of its own started with the parametrised extra arguments, and a fresh
    scheduler heartbeat so that only Redis's own checks can fail."""
    server = start_redis(tmp_path / "redis", extra=tuple(request.param))
    try:
        beat(server.client())
        yield make_bench(tmp_path / "bench", server.url), server
    finally:
        server.stop()


def doctor_json(bench: Bench) -> tuple[int, dict]:
    result = run_cli("--site", "all", "doctor", "--json", bench=bench)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def persistence_check(document: dict) -> dict:
    (check,) = [check for check in document["checks"] if check["name"] == "redis-persistence"]
    assert set(check) >= {"name", "ok", "detail", "hint", "level"}
    return check


@pytest.mark.parametrize("persistence_bench", [("--appendonly", "no", "--save", "")], indirect=True)
def test_doctor_warns_when_redis_keeps_nothing_without_failing(persistence_bench: tuple[Bench, RedisServer]) -> None:
    bench, _ = persistence_bench
    code, document = doctor_json(bench)
    check = persistence_check(document)
    assert check["level"] == "warning" and check["ok"] is True
    assert "no append-only file and no RDB save points" in check["detail"]
    assert "appendonly yes" in check["hint"]
    assert code == 0 and document["ok"] is True, "a warning does not fail doctor"

    human = run_cli("--site", "all", "doctor", bench=bench)
    assert human.returncode == 0
    assert "! redis-persistence: " in human.stdout and "appendonly yes" in human.stdout
    assert "All checks passed, 1 warning." in human.stdout


@pytest.mark.parametrize(
    ("persistence_bench", "rdb_save", "detail"),
    [
        (("--appendonly", "yes"), "", "append-only file, appendfsync everysec"),
        (("--appendonly", "yes", "--appendfsync", "always"), "", "append-only file, appendfsync always"),
        ((), "900 1", "RDB snapshots only (save 900 1)"),
    ],
    indirect=["persistence_bench"],
)
def test_doctor_does_not_warn_when_redis_persists(
    persistence_bench: tuple[Bench, RedisServer], rdb_save: str, detail: str
) -> None:
    bench, server = persistence_bench
    if rdb_save:  # Redis 6.2 keeps no save points given after `--save ''` on its command line
        server.client().config_set("save", rdb_save)
    code, document = doctor_json(bench)
    check = persistence_check(document)
    assert check["level"] == "ok" and check["ok"] is True
    assert detail in check["detail"]
    assert code == 0 and document["ok"] is True
    assert all(other["level"] == "ok" for other in document["checks"])


@pytest.mark.parametrize(
    ("persistence_bench", "detail"),
    [
        (("--rename-command", "CONFIG", ""), "persistence unknown (CONFIG is disabled)"),
        (("--rename-command", "CONFIG", "", "--appendonly", "yes"), "append-only file (CONFIG is disabled; from INFO)"),
    ],
    indirect=["persistence_bench"],
)
def test_doctor_reads_what_it_can_when_config_is_disabled(
    persistence_bench: tuple[Bench, RedisServer], detail: str
) -> None:
    bench, server = persistence_bench
    with pytest.raises(redis.ResponseError):
        server.client().config_get("appendonly")
    code, document = doctor_json(bench)
    check = persistence_check(document)
    assert check["ok"] is True and check["level"] == "ok"
    assert check["detail"].startswith(detail)
    assert code == 0
