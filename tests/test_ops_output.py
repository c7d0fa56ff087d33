"""Issue 11: output at 80 and 120 columns and piped, JSON on every failure, progress and summaries, clean
errors from the library and at the edges, and bench-jobs next to RQ's own tools (`rq info`, `rq suspend`)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import StartedJobRegistry
from support import cli_env, make_bench, point_at_redis, run_cli, wait_for, write

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.context import use_bench
from bench_jobs.errors import ConfigError, JobError, RedisUnavailable
from bench_jobs.jobs.enqueue import build_job
from bench_jobs.jobs.queues import rq_queue

LONG_SITE = "a-rather-long-site-name-for-tables.example.com"


def add_site(bench: Bench, name: str, enabled: bool = True) -> None:
    write(
        bench.site_config_path(name),
        f'timezone = "UTC"\nscheduler_enabled = {"true" if enabled else "false"}\n',
    )


def fail_job(redis_client: redis.Redis, bench: Bench, site: str, job_name: str) -> Job:
    """A failed job of `site`, as a worker leaves it (status failed, in the failed registry)."""
    rq_q, job = build_job(redis_client, load_site_settings(bench, site), "sample_app.tasks.fail", {}, job_name=job_name)
    job.origin = rq_q.name
    job.ended_at = datetime.now(timezone.utc)
    job.set_status("failed", pipeline=None)  # type: ignore[arg-type]
    job.save()
    redis_client.zadd(rq_q.failed_job_registry.key, {job.id: job.ended_at.timestamp() + 3600})
    return job


def run_at(bench: Bench, columns: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with stdout piped and the terminal width rich reads from $COLUMNS."""
    return run_cli(*args, bench=bench, env=cli_env(bench, COLUMNS=str(columns)))


def assert_fits(result: subprocess.CompletedProcess[str], columns: int) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    too_long = [line for line in result.stdout.splitlines() if len(line) > columns]
    assert not too_long, f"lines wider than {columns}:\n" + "\n".join(too_long)


# Output ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_every_table_fits_the_width_with_headers_and_ids_whole(
    bench: Bench, redis_client: redis.Redis, columns: int
) -> None:
    add_site(bench, LONG_SITE)
    use_bench(bench)
    pending = [
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", job_name="a long job name to wrap", site=site)
        for site in ("alpha.test", LONG_SITE)
    ]
    failed = [fail_job(redis_client, bench, site, "a failing job") for site in ("alpha.test", LONG_SITE)]

    queue = run_at(bench, columns, "show-queue")
    assert queue.returncode == 0
    assert_fits(queue, columns)
    header = next(line for line in queue.stdout.splitlines() if line.startswith("queue"))
    if columns < 80:
        assert header.split() == ["queue", "queued", "run", "orph", "failed", "done", "sched", "wkrs"]
        assert "orph: orphaned" in queue.stdout
    else:
        assert header.split() == [
            "queue",
            "queued",
            "started",
            "orphaned",
            "failed",
            "finished",
            "scheduled",
            "workers",
        ]
    for name in ("short", "default", "long"):  # the queue column keeps its names whole at every width
        assert re.search(rf"^{name} +\d", queue.stdout, re.MULTILINE), queue.stdout

    for command, jobs in (("show-pending-jobs", pending), ("show-failed-jobs", failed)):
        result = run_at(bench, columns, "--site", "all", command)
        assert result.returncode == 0
        assert_fits(result, columns)
        for job in jobs:  # the id's first 8 characters after its site's prefix (the title names the prefix)
            assert re.search(rf"^{job.id.rsplit('--', 1)[1][:8]} ", result.stdout, re.MULTILINE), result.stdout
            assert job.id.rsplit("--", 1)[1] not in result.stdout
        assert "sample_app.tasks.echo" in result.stdout or "sample_app.tasks.fail" in result.stdout
        assert not re.search(r"sample_app\.tasks\.\w*\n\s*\w", result.stdout), "a method path never folds"
        for site in ("alpha.test", LONG_SITE):  # one title per site
            assert f"jobs of {site}: 1" in " ".join(result.stdout.split())
        assert re.search(r"^id +queue", result.stdout, re.MULTILINE)

    schedule = run_at(bench, columns, "--site", "all", "show-schedule")
    assert schedule.returncode == 0
    assert_fits(schedule, columns)
    assert schedule.stdout.count("event / when") == 3  # a table per site
    assert "Schedule of beta.test (times in Europe/Berlin)" in schedule.stdout
    if columns >= 80:
        assert "sample_app.tasks.every_tick" in schedule.stdout  # a method path stays whole from 80 columns
    else:  # narrower, a path too long is cut with an ellipsis, never folded onto the next line
        assert "sample_app.tasks.ev…" in schedule.stdout

    doctor = run_at(bench, columns, "--site", "all", "doctor")
    assert_fits(doctor, columns)


def test_a_failed_job_can_be_shown_by_the_short_id_the_table_prints(bench: Bench, redis_client: redis.Redis) -> None:
    job = fail_job(redis_client, bench, "alpha.test", "doomed")
    short = job.id.rsplit("--", 1)[1]
    result = run_cli("--site", "alpha.test", "show-failed-jobs", "--job-id", short, "--json", bench=bench)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["job"]["id"] == job.id
    other = run_cli("--site", "beta.test", "show-failed-jobs", "--job-id", short, bench=bench)
    assert other.returncode == 2 and other.stderr.startswith("Error: ")


def test_short_ids_are_the_shortest_unique_prefix_of_8_or_more_characters() -> None:
    from bench_jobs.cli.tables import short_ids

    prefix = "b-s-"
    ids = [f"{prefix}-{hex_id}" for hex_id in ("0123456789abcdef", "0123456789abffff", "fedcba9876543210")]
    assert short_ids(ids, prefix) == {ids[0]: "0123456789abc", ids[1]: "0123456789abf", ids[2]: "fedcba98"}
    assert short_ids(["foreign-1"], "") == {"foreign-1": "foreign-1"}  # no site: kept whole


def test_job_id_options_take_a_short_id_and_refuse_an_ambiguous_or_unknown_one(
    bench: Bench, redis_client: redis.Redis
) -> None:
    jobs = [fail_job(redis_client, bench, "alpha.test", f"doomed {n}") for n in range(2)]
    hexes = [job.id.rsplit("--", 1)[1] for job in jobs]
    listed = run_cli("--site", "alpha.test", "show-failed-jobs", bench=bench)
    short = next(line.split()[0] for line in listed.stdout.splitlines() if hexes[0].startswith(line.split()[0] or "-"))
    assert 8 <= len(short) < 32
    shown = run_cli("--site", "alpha.test", "show-failed-jobs", "--job-id", short, "--json", bench=bench)
    assert shown.returncode == 0 and json.loads(shown.stdout)["job"]["id"] == jobs[0].id, shown.stderr
    requeued = run_cli("--site", "alpha.test", "requeue-failed-jobs", "--job-id", short, "--yes", bench=bench)
    assert requeued.returncode == 0 and "Requeued 1 " in requeued.stdout, requeued.stderr

    redis_client.rename(Job.key_for(jobs[1].id), Job.key_for(jobs[0].id[:-4] + "zzzz"))  # same first 28
    ambiguous = run_cli("--site", "alpha.test", "show-failed-jobs", "--job-id", hexes[0][:10], bench=bench)
    assert ambiguous.returncode == 2 and "is ambiguous: 2 jobs" in ambiguous.stderr, ambiguous.stderr
    assert jobs[0].id in ambiguous.stderr
    unknown = run_cli("--site", "alpha.test", "show-failed-jobs", "--job-id", "0000nothing", bench=bench)
    assert unknown.returncode == 2 and "No job of alpha.test has the id '0000nothing'" in unknown.stderr


def test_trigger_prints_short_ids_and_json_keeps_full_ones(bench: Bench) -> None:
    human = run_cli("--site", "alpha.test", "trigger-scheduler-event", "hourly", bench=bench)
    first = human.stdout.splitlines()[0].split()[0]
    assert human.returncode == 0 and 8 <= len(first) < 30 and not first.startswith("testbench"), human.stdout
    document = json.loads(
        run_cli("--site", "alpha.test", "trigger-scheduler-event", "hourly", "--json", bench=bench).stdout
    )
    assert all(job["id"].startswith("testbench-alpha_2etest--") for job in document["jobs"])


def test_show_schedule_shows_seconds_when_the_tick_is_under_a_minute(tmp_path: Path, redis_server: Any) -> None:
    fast = make_bench(tmp_path / "fast", redis_server.url, tick_interval_s=10)
    slow = make_bench(tmp_path / "slow", redis_server.url, tick_interval_s=60)
    with_seconds = run_cli("--site", "alpha.test", "show-schedule", bench=fast)
    without = run_cli("--site", "alpha.test", "show-schedule", bench=slow)
    assert with_seconds.returncode == 0 and without.returncode == 0
    assert re.search(r"\d\d-\d\d \d\d:\d\d:\d\d", with_seconds.stdout), with_seconds.stdout
    assert not re.search(r"\d\d:\d\d:\d\d", without.stdout) and re.search(r"\d\d-\d\d \d\d:\d\d", without.stdout)


def test_show_schedule_without_redis_shows_next_runs_and_exits_3(bench: Bench) -> None:
    point_at_redis(bench, "redis://:secret@127.0.0.1:1")
    result = run_cli("--site", "alpha.test", "show-schedule", "--json", bench=bench)
    assert result.returncode == 3
    document = json.loads(result.stdout)
    assert document["jobs"] and all(job["next_run"] for job in document["jobs"])
    assert {job["last_status"] for job in document["jobs"]} == {"unknown"}
    assert document["error"]["exit_code"] == 3 and "secret" not in result.stdout + result.stderr
    text = run_cli("--site", "alpha.test", "show-schedule", bench=bench)
    assert text.returncode == 3 and "unknown" in text.stdout and "sample_app.tasks.every_tick" in text.stdout
    assert text.stderr.startswith("Error: Redis at redis://:***@127.0.0.1:1 does not answer")


@pytest.mark.parametrize(
    "args",
    [
        ("--site", "nowhere.test", "show-pending-jobs", "--json"),  # a ConfigError from the core
        ("--site", "alpha.test", "show-pending-jobs", "--limit", "many", "--json"),  # a usage error from click
        ("--site", "alpha.test", "trigger-scheduler-event", "fortnightly", "--json"),
    ],
)
def test_a_failure_under_json_is_a_json_document_on_stdout(bench: Bench, args: tuple[str, ...]) -> None:
    result = run_cli(*args, bench=bench)
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert set(document) == {"error", "hint", "exit_code"} and document["exit_code"] == 2
    assert document["error"] and result.stderr  # the error still shows on stderr for a human


def test_json_error_when_redis_is_down_has_exit_code_3(bench: Bench) -> None:
    point_at_redis(bench, "redis://:secret@127.0.0.1:1")
    result = run_cli("show-queue", "--json", bench=bench)
    assert result.returncode == 3
    document = json.loads(result.stdout)
    assert document["exit_code"] == 3 and "redis://:***@127.0.0.1:1" in document["error"]
    assert "secret" not in result.stdout + result.stderr


def test_trigger_over_all_sites_ends_with_a_summary_line(bench: Bench) -> None:
    result = run_cli("--site", "all", "trigger-scheduler-event", "hourly", bench=bench)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Queued 3 hourly job(s) for 2 of 2 site(s)."
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def run_with_terminal_stderr(bench: Bench, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """The CLI with stdout piped and stderr on a pseudo-terminal; returns what the terminal received."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "bench_jobs", *args],
            env=cli_env(bench, COLUMNS="100"),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=60,
        )
        os.close(follower)
        seen = b""
        with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
            while chunk := os.read(leader, 65536):
                seen += chunk
    finally:
        os.close(leader)
    return process, seen.decode(errors="replace")


def test_long_work_shows_progress_on_a_terminal(bench: Bench) -> None:
    """stderr on a terminal gets rich's progress bar (trigger) or spinner (doctor); stdout stays plain."""
    for index in range(20):
        add_site(bench, f"site{index:02d}.test")
    process, terminal = run_with_terminal_stderr(bench, "--site", "all", "trigger-scheduler-event", "hourly")
    assert process.returncode == 0
    assert "Triggering hourly" in terminal
    assert process.stdout.splitlines()[-1] == "Queued 23 hourly job(s) for 22 of 22 site(s)."
    doctor, terminal = run_with_terminal_stderr(bench, "--site", "all", "doctor")
    assert "Checking 22 sites" in terminal
    assert doctor.stdout.splitlines()[-1].startswith("2 check(s) failed")


def test_doctor_over_many_sites_prints_one_line_per_check_naming_the_failing_sites(bench: Bench) -> None:
    for name in ("gamma.test", "delta.test"):
        add_site(bench, name, enabled=name != "delta.test")
    result = run_cli("--site", "all", "doctor", bench=bench)
    lines = result.stdout.splitlines()
    (enabled,) = [line for line in lines if "scheduler-enabled" in line]
    assert enabled.startswith("✗ scheduler-enabled: delta.test: the scheduler is disabled"), enabled
    assert "(1 of 4 sites)" in " ".join(result.stdout.split())
    assert "Hint: bench-jobs --site delta.test enable-scheduler" in result.stdout
    assert [line for line in lines if "hooks" in line] == ["✓ hooks: 4 site(s) ok"]
    verbose = run_cli("--verbose", "--site", "all", "doctor", bench=bench)
    assert sum("scheduler-enabled:" in line for line in verbose.stdout.splitlines()) == 4


def test_doctor_hint_names_the_site_with_failed_jobs(bench: Bench, redis_client: redis.Redis) -> None:
    fail_job(redis_client, bench, "beta.test", "doomed")
    result = run_cli("--site", "all", "doctor", "--json", bench=bench)
    (check,) = [c for c in json.loads(result.stdout)["checks"] if c["name"] == "failed-jobs:default"]
    assert check["level"] == "warning" and check["hint"] == "See them: bench-jobs --site beta.test show-failed-jobs"


def test_enable_scheduler_leaves_no_lock_file_next_to_the_config(bench: Bench) -> None:
    result = run_cli("--site", "all", "disable-scheduler", bench=bench)
    assert result.returncode == 0, result.stderr
    leftovers = [path.name for path in bench.sites_dir.rglob("*") if path.name.endswith(".lock")]
    assert leftovers == []
    assert "scheduler_enabled = false" in bench.site_config_path("alpha.test").read_text()


# Errors from the library and the edges -------------------------------------------------------------------


def test_a_library_error_shows_its_hint_in_str(bench: Bench) -> None:
    use_bench(bench)
    with pytest.raises(JobError) as raised:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x")
    assert str(raised.value).startswith("No site to enqueue for.\nHint: Pass site='name'")
    with pytest.raises(ConfigError) as unknown:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test", queue="nope")
    assert "Known queues: short, default, long" in str(unknown.value)


def test_enqueue_finds_the_site_as_the_cli_does(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    use_bench(bench)
    (bench.sites_dir / "currentsite.txt").write_text("beta.test\n")
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="x")
    assert job.kwargs["site"] == "beta.test"
    monkeypatch.setenv("BENCH_JOBS_SITE", "alpha.test")
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="y").kwargs["site"] == "alpha.test"
    monkeypatch.setenv("BENCH_JOBS_SITE", "all")
    with pytest.raises(JobError, match="a job runs for one site"):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="z")


def test_enqueue_with_redis_down_raises_redis_unavailable_without_the_password(bench: Bench) -> None:
    point_at_redis(bench, "redis://:secret@127.0.0.1:1")
    use_bench(bench)
    with pytest.raises(RedisUnavailable) as raised:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test")
    assert "redis://:***@127.0.0.1:1 does not answer" in str(raised.value) and "secret" not in str(raised.value)
    assert raised.value.exit_code == 3


@pytest.mark.parametrize("retry", ["3", -1, 2.5, True])
def test_enqueue_refuses_a_retry_that_is_not_a_count(bench: Bench, retry: Any) -> None:
    use_bench(bench)
    with pytest.raises(JobError, match="retry must be a whole number"):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test", retry=retry)


def test_a_method_that_does_not_resolve_is_refused_when_queued(bench: Bench) -> None:
    use_bench(bench)
    with pytest.raises(JobError, match="no function 'gone'"):
        bench_jobs.enqueue("sample_app.tasks.gone", site="alpha.test")


def _edge_cases(bench: Bench) -> dict[str, tuple[list[str], dict[str, str]]]:
    deep = "[" * 1000 + "]" * 1000
    return {
        "a 300-character site name": (["--site", "a" * 300, "doctor"], {}),
        "--kwargs nested a thousand deep": (
            ["--site", "alpha.test", "execute", "sample_app.tasks.echo", "--kwargs", f'{{"a": {deep}}}'],
            {},
        ),
        "an unclosed IPv6 bracket": (["show-queue"], {"BENCH_JOBS_REDIS_QUEUE": "redis://:x@[::1/0"}),
        "a port out of range": (["show-queue"], {"BENCH_JOBS_REDIS_QUEUE": "redis://localhost:99999/0"}),
    }


@pytest.mark.parametrize(
    "case, expected",
    [
        ("a 300-character site name", "at most 253 characters"),
        ("--kwargs nested a thousand deep", "nested more than 100 deep"),
        ("an unclosed IPv6 bracket", "cannot be parsed as a URL"),
        ("a port out of range", "port is out of range"),
    ],
)
def test_edges_are_clean_usage_errors(bench: Bench, case: str, expected: str) -> None:
    args, env = _edge_cases(bench)[case]
    result = run_cli(*args, bench=bench, env=cli_env(bench, **env))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: ") and expected in result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    assert "x@" not in result.stderr


def test_a_site_config_that_is_a_folder_is_a_clean_usage_error(bench: Bench) -> None:
    (bench.sites_dir / "folder.test" / "site_config.toml").mkdir(parents=True)
    for args in (["--site", "folder.test", "doctor"], ["--site", "folder.test", "show-schedule"]):
        result = run_cli(*args, bench=bench)
        assert result.returncode == 2 and "site_config.toml is not a file" in result.stderr, result.stderr
    use_bench(bench)
    with pytest.raises(ConfigError, match="is not a file"):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="folder.test")


# RQ's own tools ------------------------------------------------------------------------------------------


def test_a_worker_registers_its_queues_for_rq_info_before_any_enqueue(
    bench: Bench, redis_client: redis.Redis, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    assert not redis_client.exists("rq:queues")
    workers("--queue", "short,long")
    members = wait_for(lambda: redis_client.smembers("rq:queues"), 30, "the worker's queues in rq:queues")
    assert members == {b"rq:queue:testbench:short", b"rq:queue:testbench:long"}
    info = subprocess.run(
        ["rq", "info", "--url", f"unix://{redis_client.connection_pool.connection_kwargs['path']}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "testbench:short" in info.stdout and "testbench:long" in info.stdout, info.stdout + info.stderr


def test_doctor_shows_rq_suspend(bench: Bench, redis_client: redis.Redis) -> None:
    def suspended_check() -> dict[str, Any]:
        result = run_cli("--site", "all", "doctor", "--json", bench=bench)
        return next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "workers-suspended")

    assert suspended_check()["ok"] is True
    redis_client.set("rq:suspended", 1)  # what `rq suspend` writes
    check = suspended_check()
    assert check["ok"] is False and "rq resume" in check["hint"]


def test_a_failed_job_bench_jobs_did_not_make_is_in_every_view(bench: Bench, redis_client: redis.Redis) -> None:
    """show-queue counts it, so show-failed-jobs (--site all) lists it, doctor counts it and purge-jobs
    --failed (--site all) removes it; a single site's views leave it alone."""
    mine = fail_job(redis_client, bench, "alpha.test", "mine")
    # A job another tool (plain RQ) put on the bench's queue, failed as a worker leaves it.
    foreign = Queue("testbench:default", connection=redis_client).enqueue("os.getcwd", job_id="foreign-1")
    foreign.set_status("failed", pipeline=None)  # type: ignore[arg-type]
    redis_client.lrem("rq:queue:testbench:default", 0, foreign.id)
    redis_client.zadd("rq:failed:testbench:default", {foreign.id: datetime.now(timezone.utc).timestamp() + 3600})

    queues = {row["name"]: row for row in json.loads(run_cli("show-queue", "--json", bench=bench).stdout)["queues"]}
    assert queues["default"]["failed"] == 2
    listed = json.loads(run_cli("--site", "all", "show-failed-jobs", "--json", bench=bench).stdout)["jobs"]
    assert {job["id"] for job in listed} == {mine.id, "foreign-1"}
    one_site = json.loads(run_cli("--site", "alpha.test", "show-failed-jobs", "--json", bench=bench).stdout)["jobs"]
    assert [job["id"] for job in one_site] == [mine.id]
    checks = json.loads(run_cli("--site", "all", "doctor", "--json", bench=bench).stdout)["checks"]
    (failed,) = [c for c in checks if c["name"] == "failed-jobs:default"]
    assert "1 not made by bench-jobs" in failed["detail"] and failed["hint"].endswith("--site all show-failed-jobs")

    purged = run_cli("--site", "all", "purge-jobs", "--failed", "--yes", "--json", bench=bench)
    assert json.loads(purged.stdout) == {"purged": 2}
    assert redis_client.zcard("rq:failed:testbench:default") == 0


@pytest.mark.slow
def test_a_second_sigterm_fails_the_running_job_at_once(
    bench: Bench, redis_client: redis.Redis, workers: Callable[..., subprocess.Popen[str]]
) -> None:
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.sleep", seconds=60, site="alpha.test")
    process = workers("--queue", "default")
    wait_for(lambda: job.get_status(refresh=True) == "started", 30, "the job to start")
    process.send_signal(signal.SIGTERM)  # warm: the job may finish...
    time.sleep(1.5)  # RQ ignores a second signal within 1 s of the first (a pool sends two)
    process.send_signal(signal.SIGTERM)  # ...cold: it is stopped, and failed before the worker exits
    process.wait(30)
    assert job.get_status(refresh=True) == "failed"
    result = job.latest_result()
    assert result is not None and "second SIGTERM" in (result.exc_string or "")
    registry = StartedJobRegistry(queue=rq_queue(redis_client, load_bench_settings(bench), "default"))
    assert job.id not in registry.get_job_ids()
