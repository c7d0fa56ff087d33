"""App code changes while the bench runs: `start` reloads its workers and scheduler (a running job finishes on
the old code), and `doctor` warns about a live worker that runs code older than the files on disk."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from support import cli_env, kill_tree, make_bench, run_cli, start_cli
from test_doctor import beat
from test_procs_start import QUEUES, alive, enqueue_demo, new_bench, served_queues, wait_for

from bench_jobs.core.bench import Bench
from bench_jobs.core.keys import Keys
from bench_jobs.ops.start import descendants

pytestmark = pytest.mark.slow


@pytest.fixture
def start_logged(tmp_path: Path) -> Iterator[Callable[[Bench, Path], subprocess.Popen[bytes]]]:
    """`bench-jobs start` in a session of its own, its output in a file the test reads while it runs; whatever
    is left of its tree is SIGKILLed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(bench: Bench, log: Path, *args: str) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "bench_jobs", "start", *args],
                cwd=bench.root,
                env=cli_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        leftovers = descendants(process.pid)
        for pid in [process.pid, *leftovers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)


def job_result(client: redis.Redis, job_id: str) -> Any:
    job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    return job.return_value() if job.get_status() == "finished" else None


def enqueue(bench: Bench, method: str, **kwargs: Any) -> str:
    """Enqueue from another process, as an application would."""
    code = f"import bench_jobs\nprint(bench_jobs.enqueue({method!r}, site='site1.local', **{kwargs!r}).id)\n"
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(bench), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def job_records(bench: Bench, job_id: str) -> list[dict[str, Any]]:
    path = bench.logs_dir / "site1.local" / "jobs.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for record in map(json.loads, lines) if record["job_id"] == job_id]


def scheduler_pid(client: redis.Redis) -> int | None:
    beats = client.zrange(Keys("bench").scheduler_processes, 0, -1)
    return int(beats[-1].decode().rsplit(":", 1)[1]) if beats else None


def test_start_reloads_workers_and_scheduler_on_an_app_edit_and_the_running_job_finishes_on_the_old_code(
    tmp_path: Path, start_logged: Any
) -> None:
    bench, url = new_bench(tmp_path)
    log = tmp_path / "start.log"
    start = start_logged(bench, log)
    client = redis.Redis.from_url(url)
    wait_for(lambda: served_queues(client, "bench") == QUEUES, 30, "a worker on every queue")
    first_scheduler = wait_for(lambda: scheduler_pid(client), 30, "the scheduler's heartbeat")
    before = enqueue_demo(bench, "OLD")
    assert wait_for(lambda: job_result(client, before), 30, "the first job") == "sent OLD"
    workers_before = [worker.pid for worker in Worker.all(connection=client)]
    assert len(workers_before) == 3

    running = enqueue_demo(bench, "SLOW", delay_s=6)
    job = Job.fetch(running, connection=client, serializer=JSONSerializer)
    wait_for(lambda: job.get_status(refresh=True) == "started", 30, "the slow job to start")
    tasks = bench.apps_dir / "demo_app" / "tasks.py"
    text = tasks.read_text()
    assert 'return f"sent {record_id}"' in text
    tasks.write_text(
        text.replace('return f"sent {record_id}"', 'return f"sent v2 {record_id}"')
        + '\n\ndef shout(word: str) -> str:\n    return word.upper() + "!"\n'
    )
    line = "reload         | apps/demo_app/tasks.py changed: restarting schedule, worker-short, worker-default"
    wait_for(lambda: line in log.read_text(), 30, "the reload line")

    after = enqueue_demo(bench, "NEW")
    added = enqueue(bench, "demo_app.tasks.shout", word="hey")
    assert wait_for(lambda: job_result(client, after), 60, "a job after the reload") == "sent v2 NEW"
    assert wait_for(lambda: job_result(client, added), 30, "the new function's job") == "HEY!"
    assert wait_for(lambda: job_result(client, running), 30, "the job that ran during the reload") == "sent SLOW"
    assert [r["status"] for r in job_records(bench, running)] == ["finished"], "not failed, not run twice"
    wait_for(lambda: not any(alive(pid) for pid in workers_before), 30, "the old workers to exit")
    assert wait_for(lambda: scheduler_pid(client) != first_scheduler and scheduler_pid(client), 30, "a new scheduler")

    os.kill(start.pid, signal.SIGTERM)
    assert start.wait(60) == 0, log.read_text()
    output = log.read_text()
    assert output.count("changed: restarting") == 1, "one reload for one save\n" + output
    assert "worker-default (pid=" in output and "the code before the reload) stopped (rc=0)" in output


def test_start_with_no_reload_keeps_the_code_it_started_with(tmp_path: Path, start_logged: Any) -> None:
    bench, url = new_bench(tmp_path)
    log = tmp_path / "start.log"
    start = start_logged(bench, log, "--no-reload")
    client = redis.Redis.from_url(url)
    wait_for(lambda: served_queues(client, "bench") == QUEUES, 30, "a worker on every queue")
    tasks = bench.apps_dir / "demo_app" / "tasks.py"
    tasks.write_text(tasks.read_text().replace('return f"sent {record_id}"', 'return f"sent v2 {record_id}"'))
    time.sleep(3)  # three polls of the watch, were it on
    job_id = enqueue_demo(bench, "SAME")
    assert wait_for(lambda: job_result(client, job_id), 30, "the job") == "sent SAME"
    os.kill(start.pid, signal.SIGTERM)
    assert start.wait(60) == 0
    assert "changed: restarting" not in log.read_text() and "watching" not in log.read_text()


def stale_code(bench: Bench) -> tuple[int, dict[str, Any]]:
    result = run_cli("--site", "all", "doctor", "--json", bench=bench)
    (check,) = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "stale-code"]
    return result.returncode, check


def test_doctor_warns_stale_code_for_a_live_worker_once_an_app_file_is_newer_than_what_it_loaded(
    bench: Bench, redis_client: redis.Redis
) -> None:
    beat(redis_client)  # a scheduler's heartbeat: doctor is healthy but for what this test changes
    worker = start_cli(bench, "worker", "--queue", "default")
    try:
        wait_for(lambda: redis_client.keys("bench_jobs:testbench:alive:*"), 30, "the worker to be alive")
        code, check = stale_code(bench)
        assert code == 0 and check["level"] == "ok", check
        assert "1 live worker(s) run the app code on disk" in check["detail"]

        tasks = bench.apps_dir / "sample_app" / "tasks.py"
        newer_s = time.time() + 5
        os.utime(tasks, (newer_s, newer_s))
        code, check = stale_code(bench)
        assert code == 0, "a warning: doctor still passes (exit 0)"
        assert check["ok"] is True and check["level"] == "warning", check
        (name,) = [key.decode().rsplit(":", 1)[1] for key in redis_client.keys("bench_jobs:testbench:alive:*")]
        assert "sample_app: apps/sample_app/tasks.py changed at " in check["detail"]
        assert f"after 1 live worker(s) loaded their code: {name} (pid {worker.pid} on " in check["detail"]
        assert "bench-jobs start` reloads them" in check["hint"] and "supervisorctl restart" in check["hint"]
    finally:
        kill_tree(worker)


def test_the_code_watch_reports_a_burst_of_saves_once_with_added_and_removed_files_and_skips_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench_jobs.ops import code_watch

    monkeypatch.setattr(code_watch, "POLL_INTERVAL_S", 0.2)
    monkeypatch.setattr(code_watch, "SETTLE_S", 1.0)  # wide, for a busy machine: the saves below are 0.2 s apart
    bench = make_bench(tmp_path / "bench", "redis://127.0.0.1:1")
    app = bench.apps_dir / "sample_app"
    reports: list[list[Path]] = []
    watch = code_watch.CodeWatch(bench, reports.append)
    assert watch.roots == [app, bench.apps_dir / "other_app"]
    watch.start()
    try:
        time.sleep(0.5)
        (app / "tests").mkdir()
        (app / "tests" / "__init__.py").write_text("")
        (app / "tests" / "test_tasks.py").write_text("def test_x(): pass\n")
        (app / "test_more.py").write_text("")
        time.sleep(1.5)
        assert reports == [], "tests are not code a worker imports"

        (app / "tasks.py").write_text((app / "tasks.py").read_text() + "\n# edited\n")
        time.sleep(0.2)
        (app / "added.py").write_text("X = 1\n")
        time.sleep(0.2)
        (app / "callbacks.py").unlink()
        wait_for(lambda: reports, 10, "the report")
        time.sleep(1.5)
    finally:
        watch.stop()
    assert reports == [sorted([app / "tasks.py", app / "added.py", app / "callbacks.py"])]


def test_a_stop_during_a_reload_waits_for_the_job_the_old_worker_still_runs(tmp_path: Path, start_logged: Any) -> None:
    bench, url = new_bench(tmp_path)
    log = tmp_path / "start.log"
    start = start_logged(bench, log)
    client = redis.Redis.from_url(url)
    wait_for(lambda: served_queues(client, "bench") == QUEUES, 30, "a worker on every queue")
    running = enqueue_demo(bench, "SLOW", delay_s=8)
    job = Job.fetch(running, connection=client, serializer=JSONSerializer)
    wait_for(lambda: job.get_status(refresh=True) == "started", 30, "the slow job to start")
    tasks = bench.apps_dir / "demo_app" / "tasks.py"
    tasks.write_text(tasks.read_text() + "\n# edited\n")
    wait_for(lambda: "changed: restarting" in log.read_text(), 30, "the reload line")
    tree = descendants(start.pid)
    os.kill(start.pid, signal.SIGTERM)
    assert start.wait(60) == 0, log.read_text()
    output = log.read_text()
    assert [r["status"] for r in job_records(bench, running)] == ["finished"], output
    stopping = output.index("SIGTERM received: stopping")
    assert output.index("the code before the reload) stopped (rc=0)", stopping) < output.index("redis-server stopped")
    assert [pid for pid in [start.pid, *tree] if alive(pid)] == []


def test_the_stale_code_check_walks_the_apps_files_once_per_half_minute(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard runs doctor's checks on every refresh: a big app's thousands of files are not walked each
    time (a worker's stale code shows within FILES_FRESH_S)."""
    from bench_jobs.ops import code_checks

    walks: list[int] = []
    real = code_checks.source_mtimes

    def counted(roots: Any) -> Any:
        walks.append(1)
        return real(roots)

    monkeypatch.setattr(code_checks, "source_mtimes", counted)
    first = code_checks._app_files(bench)
    walked = len(walks)
    assert walked >= 1 and first
    assert code_checks._app_files(bench) == first and len(walks) == walked  # the second read walked nothing
    monkeypatch.setattr(code_checks, "FILES_FRESH_S", 0.0)
    code_checks._app_files(bench)
    assert len(walks) > walked
