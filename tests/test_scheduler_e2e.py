"""Real `bench-jobs schedule` processes, a real worker, and the scheduler's CLI commands (DESIGN 5 and 6)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from support import cli_env, kill_tree, make_bench, run_cli, start_cli, wait_for, write

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.jobs import history as schedule_history
from bench_jobs.scheduler.tick import Scheduler

pytestmark = pytest.mark.slow
KEYS = Keys("testbench")
UTC = timezone.utc


@pytest.fixture
def fast_bench(tmp_path: Path, redis_server: Any, redis_client: redis.Redis) -> Bench:
    """Two sites whose app has a job on every 1 s tick (`all` with scheduler_interval 1) and a slow hourly job."""
    bench = make_bench(tmp_path / "bench", redis_server.url, tick_interval_s=1)
    common = bench.common_config_path
    common.write_text(
        common.read_text().replace(
            "scheduler_tick_interval = 1\n", "scheduler_tick_interval = 1\nscheduler_interval = 1\n"
        )
    )
    write(
        bench.apps_dir / "tick_app" / "hooks.py",
        'scheduler_events = {"all": ["tick_app.jobs.beat"],\n'
        '                    "hourly": [{"method": "tick_app.jobs.slow", "queue": "long"}]}\n',
    )
    write(bench.apps_dir / "tick_app" / "__init__.py", "")
    write(
        bench.apps_dir / "tick_app" / "jobs.py",
        "import time\n\ndef beat():\n    pass\n\ndef slow():\n    time.sleep(60)\n",
    )
    for site in ("alpha.test", "beta.test"):
        write(bench.site_config_path(site), 'apps = ["tick_app"]\ntimezone = "UTC"\nscheduler_enabled = true\n')
    return bench


@pytest.fixture
def processes(fast_bench: Bench) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        started.append(start_cli(fast_bench, *args))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            kill_tree(process)


def fired_slots(conn: redis.Redis, site: str, method: str, statuses: tuple[str, ...] = ("queued",)) -> list[int]:
    """Slots (epoch s) of `method`'s history entries with those statuses, oldest first, repeats kept."""
    entries = schedule_history.read(conn, KEYS, site)
    return sorted(
        int(datetime.fromisoformat(str(e["slot"])).timestamp())
        for e in entries
        if e["status"] in statuses and e["method"] == method
    )


def leader_pid(conn: redis.Redis) -> int | None:
    token = conn.get(KEYS.leader)
    return int(token.decode().split(":")[1]) if token else None


def test_three_schedulers_fire_every_slot_once_and_a_standby_replaces_a_killed_leader(
    processes: Callable[..., subprocess.Popen[str]], redis_client: redis.Redis
) -> None:
    processes("worker", "--queue", "default")
    schedulers = {p.pid: p for p in (processes("schedule") for _ in range(3))}
    first_leader = wait_for(lambda: leader_pid(redis_client), what="a leader")
    wait_for(lambda: len(fired_slots(redis_client, "alpha.test", "tick_app.jobs.beat")) >= 3, what="ticks")
    time.sleep(1.5 - time.time() % 1)  # between two ticks, so the kill never lands inside one
    os.kill(first_leader, signal.SIGKILL)
    killed_at = time.time()
    wait_for(lambda: leader_pid(redis_client) not in (None, first_leader), what="a new leader")
    assert time.time() - killed_at <= 2.1
    assert leader_pid(redis_client) in schedulers
    after_kill = int(killed_at) + 4
    wait_for(lambda: fired_slots(redis_client, "beta.test", "tick_app.jobs.beat")[-1] >= after_kill, what="ticks")
    for pid, process in schedulers.items():
        if pid != first_leader:
            process.send_signal(signal.SIGTERM)
    for pid, process in schedulers.items():
        if pid != first_leader:
            assert process.wait(10) == 0, process.stdout.read() if process.stdout else ""
    assert redis_client.get(KEYS.leader) is None
    for site in ("alpha.test", "beta.test"):
        # A slot whose previous run had not been picked up yet is skipped (and recorded), never lost.
        slots = fired_slots(redis_client, site, "tick_app.jobs.beat", ("queued", "skipped"))
        assert slots == list(range(slots[0], slots[-1] + 1)), f"{site}: a slot was lost or doubled: {slots}"
        assert slots[0] < killed_at < slots[-1]
        assert len(fired_slots(redis_client, site, "tick_app.jobs.beat")) >= len(slots) - 2
        queue = [job_id.decode() for job_id in redis_client.lrange("rq:queue:testbench:default", 0, -1)]
        assert len(queue) == len(set(queue))


def test_a_job_running_on_a_worker_is_skipped_until_the_worker_is_killed(
    fast_bench: Bench, processes: Callable[..., subprocess.Popen[str]], redis_client: redis.Redis
) -> None:
    use_bench(fast_bench)
    sched = Scheduler(fast_bench, connect(load_bench_settings(fast_bench)))
    hour = 3600 * (int(time.time()) // 3600)
    sched.tick(datetime.fromtimestamp(hour - 1800, UTC))
    first = [d for d in sched.tick(datetime.fromtimestamp(hour, UTC)).fired if d.job.event == "hourly"]
    job_id = next(d.job_id for d in first if d.site == "alpha.test")
    redis_client.delete("rq:queue:testbench:default")
    redis_client.rpush("rq:queue:testbench:default", job_id)  # only the slow job of alpha.test
    worker = processes("worker", "--queue", "default")
    # The worker claims the job (status `started`) before its horse runs it and writes `started` to the history.
    wait_for(
        lambda: any(e["status"] == "started" for e in schedule_history.read(redis_client, KEYS, "alpha.test")),
        what="the job to start running",
    )
    skipped = sched.tick(datetime.fromtimestamp(hour + 3600, UTC)).skipped
    assert ("alpha.test", "tick_app.jobs.slow") in {(d.site, d.job.method) for d in skipped}
    history = schedule_history.read(redis_client, KEYS, "alpha.test")
    assert any(e["status"] == "skipped" and "running" in str(e["reason"]) for e in history)
    assert any(e["status"] == "started" and e["job_id"] == job_id for e in history)
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    os.killpg(worker.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)
    worker.wait(10)
    fired = sched.tick(datetime.fromtimestamp(hour + 7200, UTC)).fired
    assert ("alpha.test", "tick_app.jobs.slow") in {(d.site, d.job.method) for d in fired}


def test_a_worker_records_the_outcome_of_a_scheduled_run_in_the_history(
    fast_bench: Bench, redis_client: redis.Redis
) -> None:
    triggered = run_cli("--site", "alpha.test", "trigger-scheduler-event", "all", "--json", bench=fast_bench)
    (job,) = json.loads(triggered.stdout)["jobs"]
    assert run_cli("worker", "--burst", "--queue", "default", bench=fast_bench).returncode == 0
    history = schedule_history.read(redis_client, KEYS, "alpha.test")
    outcome = next(e for e in history if e.get("job_id") == job["id"] and e["status"] == "finished")
    assert outcome["method"] == "tick_app.jobs.beat" and float(outcome["duration_s"]) >= 0


def test_trigger_daily_for_all_sites_enqueues_each_sites_daily_jobs_once(
    bench: Bench, redis_client: redis.Redis
) -> None:
    result = run_cli("--site", "all", "trigger-scheduler-event", "daily", "--json", bench=bench)
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)["jobs"]
    assert {(j["site"], j["method"]) for j in jobs} == {
        ("alpha.test", "sample_app.tasks.daily"),
        ("beta.test", "sample_app.tasks.daily"),
    }
    queue = [job_id.decode() for job_id in redis_client.lrange("rq:queue:testbench:default", 0, -1)]
    assert sorted(queue) == sorted(j["id"] for j in jobs)
    assert redis_client.exists(KEYS.last_runs("alpha.test")) == 0  # the schedule's own state is left alone
    human = run_cli("--site", "alpha.test", "trigger-scheduler-event", "sample_app.tasks.at_half_past_two", bench=bench)
    assert human.returncode == 0 and "sample_app.tasks.at_half_past_two" in human.stdout
    assert redis_client.llen("rq:queue:testbench:short") == 1


def test_trigger_queues_the_valid_jobs_of_an_event_and_warns_about_broken_ones(
    bench: Bench, redis_client: redis.Redis
) -> None:
    hooks = bench.apps_dir / "sample_app" / "hooks.py"
    hooks.write_text(
        hooks.read_text().replace(
            '"daily": ["sample_app.tasks.daily"]',
            '"daily": ["sample_app.tasks.daily", "sample_app.tasks.gone", "no path"]',
        )
    )
    result = run_cli("--site", "alpha.test", "trigger-scheduler-event", "daily", "--json", bench=bench)
    assert result.returncode == 0, result.stderr
    assert [j["method"] for j in json.loads(result.stdout)["jobs"]] == ["sample_app.tasks.daily"]
    assert (
        "Warning: not queued: alpha.test: sample_app.hooks daily: Cannot import 'sample_app.tasks.gone'"
        in result.stderr
    )
    assert "no path" in result.stderr
    assert redis_client.llen("rq:queue:testbench:default") == 1


def test_an_unknown_event_exits_2_listing_the_valid_ones(bench: Bench) -> None:
    result = run_cli("--site", "alpha.test", "trigger-scheduler-event", "dayly", bench=bench)
    assert result.returncode == 2
    assert "Unknown scheduler event 'dayly'" in result.stderr and "hourly, daily" in result.stderr
    missing = run_cli("--site", "alpha.test", "trigger-scheduler-event", "sample_app.tasks.nope", bench=bench)
    assert missing.returncode == 2 and "not a scheduled job" in missing.stderr


def test_show_schedule_lists_jobs_with_last_and_next_run_in_the_sites_zone(bench: Bench) -> None:
    once = run_cli("schedule", "--once", "--json", bench=bench)
    assert once.returncode == 0, once.stderr
    assert json.loads(once.stdout)["fired"] == []  # first sighting
    result = run_cli("--site", "all", "show-schedule", "--json", bench=bench)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["jobs"]
    daily = next(r for r in rows if r["site"] == "beta.test" and r["method"] == "sample_app.tasks.daily")
    assert daily["event"] == "daily" and daily["queue"] == "default" and daily["cron_words"] == "every day at 00:00"
    next_run = datetime.fromisoformat(daily["next_run"])
    offset = next_run.utcoffset()
    assert next_run.strftime("%H:%M") == "00:00" and offset is not None and offset.total_seconds() in (3600, 7200)
    assert daily["last_run"] is None and daily["last_status"] is None
    table = run_cli("--site", "alpha.test", "show-schedule", bench=bench, env=cli_env(bench, COLUMNS="200"))
    assert table.returncode == 0 and "every hour at :00" in table.stdout


def test_show_schedule_reports_the_last_fired_slot_and_its_status(bench: Bench) -> None:
    use_bench(bench)
    sched = Scheduler(bench, connect(load_bench_settings(bench)))
    sched.tick(datetime(2026, 1, 5, 10, 30, tzinfo=UTC))
    sched.tick(datetime(2026, 1, 5, 11, 0, tzinfo=UTC))
    rows = json.loads(run_cli("--site", "beta.test", "show-schedule", "--json", bench=bench).stdout)["jobs"]
    hourly = next(r for r in rows if r["method"] == "sample_app.tasks.hourly")
    assert hourly["last_run"] == "2026-01-05T12:00:00+01:00" and hourly["last_status"] == "queued"


def test_a_cron_that_never_matches_is_reported_by_doctor_and_left_out_of_show_schedule(bench: Bench) -> None:
    hooks = bench.apps_dir / "other_app" / "hooks.py"
    hooks.write_text(
        hooks.read_text() + '\nscheduler_events["cron"] = {"0 0 31 2 *": ["other_app.tasks.only_for_beta"]}\n'
    )
    shown = run_cli("--site", "beta.test", "show-schedule", "--json", bench=bench)
    assert shown.returncode == 0 and "Error" not in shown.stderr, shown.stderr
    assert all(row["cron"] != "0 0 31 2 *" for row in json.loads(shown.stdout)["jobs"])
    once = run_cli("schedule", "--once", "--json", bench=bench)
    assert once.returncode == 1 and "Error" not in once.stderr, "a site with problems fails a --once run"
    assert any("never matches a real date" in problem for problem in json.loads(once.stdout)["problems"])
    doctor = json.loads(run_cli("--site", "beta.test", "doctor", "--json", bench=bench).stdout)
    (hooks_check,) = [check for check in doctor["checks"] if check["name"] == "hooks:beta.test"]
    assert not hooks_check["ok"] and "0 0 31 2 *: never matches a real date" in hooks_check["detail"]
