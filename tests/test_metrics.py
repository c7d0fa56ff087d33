"""Prometheus metrics (`bench-jobs metrics`, web/metrics.py): numbers that agree with show-queue, names that
pass `promtool check metrics`, scheduler counters that outlive the capped history, on a real Redis."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq.job import Job
from rq.utils import utcformat
from support import make_bench, run_cli

import bench_jobs
from bench_jobs.cli import main
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys, new_job_id
from bench_jobs.jobs import history
from bench_jobs.jobs.enqueue import build_job
from bench_jobs.scheduler.leader import Heartbeat, write_heartbeat
from bench_jobs.scheduler.tick import Scheduler
from bench_jobs.web.metrics import content_type, render_metrics

Samples = dict[str, list[tuple[dict[str, str], float]]]


def samples(text: str) -> Samples:
    """Sample name -> [(labels, value)], parsed by prometheus_client's own parser."""
    found: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((sample.labels, sample.value))
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    matches = [v for sample_labels, v in found[name] if all(sample_labels.get(k) == w for k, w in labels.items())]
    assert len(matches) == 1, (name, labels, found[name])
    return matches[0]


def total(found: Samples, name: str, **labels: str) -> float:
    return sum(v for sample_labels, v in found[name] if all(sample_labels.get(k) == w for k, w in labels.items()))


def cli_metrics(bench: Bench) -> Samples:
    result = run_cli("metrics", bench=bench)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return samples(result.stdout)


def write_started_job(redis_client: redis.Redis, bench: Bench, site: str, worker_name: str) -> Job:
    """A job that a worker called `worker_name` took: status started, in the queue's started registry."""
    settings = load_site_settings(bench, site)
    rq_q, job = build_job(redis_client, settings, "sample_app.tasks.sleep", {"seconds": 60})
    job.origin = rq_q.name
    job.enqueued_at = job.started_at = datetime.now(timezone.utc)
    job.worker_name = worker_name
    job.set_status("started", pipeline=None)  # type: ignore[arg-type]
    job.save()
    redis_client.zadd(rq_q.started_job_registry.key, {f"{job.id}:exec1": 4102444800})
    return job


def beat(redis_client: redis.Redis, age_s: float, lag_s: float) -> None:
    at = datetime.now(timezone.utc) - timedelta(seconds=age_s)
    beat = Heartbeat(at.isoformat(), "h", 1, leader=True, tick_interval_s=60, tick_lag_s=lag_s, tick_duration_s=0.2)
    write_heartbeat(redis_client, Keys("testbench"), beat)


def entry(site: str, status: str, event: str | None, method: str = "sample_app.tasks.tick") -> history.HistoryEntry:
    return history.HistoryEntry(history.iso(datetime.now(timezone.utc)), site, status, method, event)


def record(redis_client: redis.Redis, site: str, entries: list[history.HistoryEntry]) -> None:
    with redis_client.pipeline(transaction=False) as pipe:
        history.push(pipe, Keys("testbench"), site, entries)
        pipe.execute()


def test_metrics_agree_with_show_queue_per_queue_and_state(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    for i in range(3):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"a{i}", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="b0", queue="short", site="beta.test")
    bench_jobs.enqueue("sample_app.tasks.fail", message="once", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.fail", message="retried", retry=1, site="beta.test")
    result = run_cli("worker", "--burst", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for i in range(2):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"l{i}", queue="long", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="l2", queue="long", site="beta.test")
    redis_client.rpush("rq:queue:testbench:long", "someone-elses-id")
    keys = Keys("testbench")
    redis_client.sadd("rq:workers:testbench:default", "rq:worker:w-live", "rq:worker:w-dead")
    redis_client.set(keys.worker_alive("w-live"), "host:1", ex=15)
    redis_client.hset("rq:worker:w-live", "state", "busy")
    running = write_started_job(redis_client, bench, "beta.test", "w-live")
    redis_client.zadd("rq:wip:testbench:default", {f"{running.id}:exec2": 4102444800})  # one job, two executions
    write_started_job(redis_client, bench, "alpha.test", "w-dead")
    expired = datetime.now(timezone.utc).timestamp() - 5  # RQ removes it at its next cleanup; nobody counts it
    redis_client.zadd("rq:finished:testbench:short", {new_job_id("testbench", "alpha.test"): expired})
    redis_client.zadd("rq:failed:testbench:short", {new_job_id("testbench", "alpha.test"): -1})  # kept forever

    shown = run_cli("show-queue", "--json", bench=bench)
    assert shown.returncode == 0, shown.stderr
    rows = {row["name"]: row for row in json.loads(shown.stdout)["queues"]}
    found = cli_metrics(bench)

    for name, row in rows.items():
        for state in ("queued", "started", "failed", "finished", "scheduled", "deferred"):
            assert total(found, "bench_jobs_jobs", queue=name, state=state) == row[state], (name, state)
        assert value(found, "bench_jobs_orphaned_jobs", queue=name) == row["orphaned"]
        assert value(found, "bench_jobs_queue_workers", queue=name) == row["workers"]
        assert value(found, "bench_jobs_job_duration_seconds_bucket", queue=name, le="+Inf") == row["finished"]
    assert rows["long"]["queued"] == 4 and rows["default"]["finished"] == 3 and rows["default"]["started"] == 2
    assert (rows["short"]["finished"], rows["short"]["failed"]) == (1, 1)
    assert value(found, "bench_jobs_jobs", queue="long", site="alpha.test", state="queued") == 2
    assert value(found, "bench_jobs_jobs", queue="long", site="beta.test", state="queued") == 1
    assert value(found, "bench_jobs_jobs", queue="long", site="(unknown)", state="queued") == 1
    assert value(found, "bench_jobs_jobs", queue="default", site="alpha.test", state="failed") == 1
    assert value(found, "bench_jobs_jobs", queue="default", site="beta.test", state="scheduled") == 1
    assert value(found, "bench_jobs_jobs", queue="default", site="beta.test", state="started") == 1
    assert value(found, "bench_jobs_workers", state="busy") == 1  # w-dead has no alive key
    assert value(found, "bench_jobs_workers", state="idle") == 0
    assert value(found, "bench_jobs_job_duration_seconds_gsum", queue="default") < 30
    assert value(found, "bench_jobs_oldest_queued_job_age_seconds", queue="default") == 0
    assert 0 <= value(found, "bench_jobs_oldest_queued_job_age_seconds", queue="long") < 60


def test_jobs_are_counted_by_the_site_their_id_names_without_reading_job_hashes(
    bench: Bench, redis_client: redis.Redis
) -> None:
    ids = [new_job_id("testbench", "alpha.test") for _ in range(2500)] + [new_job_id("testbench", "beta.test")]
    redis_client.rpush("rq:queue:testbench:default", *ids)  # ids only: no job hash behind any of them
    redis_client.rpush("rq:queue:testbench:default", new_job_id("otherbench", "alpha.test"))
    found = samples(render_metrics(bench).decode())
    assert value(found, "bench_jobs_jobs", queue="default", site="alpha.test", state="queued") == 2500
    assert value(found, "bench_jobs_jobs", queue="default", site="beta.test", state="queued") == 1
    assert value(found, "bench_jobs_jobs", queue="default", site="(unknown)", state="queued") == 1


def test_the_oldest_queued_age_looks_past_jobs_pushed_to_the_front(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    old = bench_jobs.enqueue("sample_app.tasks.echo", record_id="old", site="alpha.test")
    assert old is not None
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    redis_client.hset(Job.key_for(old.id), "enqueued_at", utcformat(an_hour_ago))
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="urgent", at_front=True, site="alpha.test")
    age_s = value(samples(render_metrics(bench).decode()), "bench_jobs_oldest_queued_job_age_seconds", queue="default")
    assert 3590 < age_s < 3700


def test_scheduler_metrics_show_the_last_tick_and_count_past_the_capped_history(
    bench: Bench, redis_client: redis.Redis
) -> None:
    found = samples(render_metrics(bench).decode())
    assert "bench_jobs_scheduler_last_tick_age_seconds" not in found, "no scheduler ever ticked"
    assert value(found, "bench_jobs_scheduler_processes") == 0

    beat(redis_client, age_s=42, lag_s=0.25)
    for _ in range(history.HISTORY_LIMIT + 10):
        record(redis_client, "alpha.test", [entry("alpha.test", "queued", "hourly")])
    record(
        redis_client, "alpha.test", [entry("alpha.test", "skipped", "hourly"), entry("alpha.test", "failed", "daily")]
    )
    record(redis_client, "beta.test", [entry("beta.test", "queued", "cron"), entry("beta.test", "finished", "cron")])
    assert redis_client.llen(Keys("testbench").history("alpha.test")) == history.HISTORY_LIMIT

    found = samples(render_metrics(bench).decode())
    assert 41 <= value(found, "bench_jobs_scheduler_last_tick_age_seconds") < 60
    assert value(found, "bench_jobs_scheduler_tick_lag_seconds") == 0.25
    assert value(found, "bench_jobs_scheduler_tick_duration_seconds") == 0.2
    assert value(found, "bench_jobs_scheduler_tick_interval_seconds") == 60
    assert value(found, "bench_jobs_scheduler_processes") == 1
    fires = value(found, "bench_jobs_scheduler_fires_total", site="alpha.test", event="hourly")
    assert fires == history.HISTORY_LIMIT + 10, "a counter only grows, whatever the capped list forgot"
    assert value(found, "bench_jobs_scheduler_fires_total", site="beta.test", event="cron") == 1
    assert value(found, "bench_jobs_scheduler_skips_total", site="alpha.test", event="hourly") == 1
    assert value(found, "bench_jobs_scheduled_job_failures_total", site="alpha.test", event="daily") == 1
    assert value(found, "bench_jobs_scheduled_job_successes_total", site="beta.test", event="cron") == 1


def test_metrics_pass_promtool_check_metrics(bench: Bench, redis_client: redis.Redis, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: apt-get install prometheus (.ci/run installs it)")
    use_bench(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="a", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.fail", site="beta.test", queue="short")
    result = run_cli("worker", "--burst", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="b", site="beta.test", queue="long")
    beat(redis_client, age_s=3, lag_s=0.1)
    record(redis_client, "alpha.test", [entry("alpha.test", status, "daily") for status in ("queued", "skipped")])
    record(redis_client, "beta.test", [entry("beta.test", status, "cron") for status in ("failed", "finished")])
    text = run_cli("metrics", bench=bench).stdout
    for family in ("bench_jobs_jobs", "bench_jobs_job_duration_seconds_bucket", "bench_jobs_scheduler_fires_total"):
        assert family in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr


def test_metrics_bytes_are_served_as_prometheus_clients_latest_content_type() -> None:
    import prometheus_client

    assert content_type() == prometheus_client.CONTENT_TYPE_LATEST


def test_metrics_help_has_an_example_and_imports_no_prometheus_client(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", "--help"]) == 0
    assert "Examples:" in capsys.readouterr().out
    code = (
        "import sys; from bench_jobs.cli import main\n"
        "for argv in (['--help'], ['metrics', '--help']):\n"
        "    main(argv)\n"
        "print(sorted(m for m in ('prometheus_client', 'rq', 'redis') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr


def test_metrics_exits_3_without_traceback_or_password_when_redis_does_not_answer(tmp_path: Any) -> None:
    bench = make_bench(tmp_path / "b", "redis://:s3cret-pass@127.0.0.1:1/0")
    result = run_cli("metrics", bench=bench)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert "s3cret-pass" not in result.stderr + result.stdout and result.stdout == ""


def test_metrics_of_an_unknown_site_is_a_usage_error(bench: Bench) -> None:
    result = run_cli("--site", "nope.test", "metrics", bench=bench)
    assert result.returncode == 2 and result.stderr.startswith("Error: "), result.stderr


def test_metrics_without_prometheus_client_say_which_extra_to_install(bench: Bench) -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from bench_jobs.cli import main\n"
        f"sys.exit(main(['--bench', {str(bench.root)!r}, 'metrics']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "prometheus_client" in result.stderr and "Hint: Install the web extra" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_real_ticks_fires_and_skips_are_counted_per_site_and_event(bench: Bench) -> None:
    use_bench(bench)
    scheduler = Scheduler(bench, connect(load_bench_settings(bench)))
    scheduler.tick(datetime(2026, 1, 5, 9, 59, 30, tzinfo=timezone.utc))  # first sightings: nothing fires
    first = scheduler.tick(datetime(2026, 1, 5, 10, 0, 0, tzinfo=timezone.utc))
    second = scheduler.tick(datetime(2026, 1, 5, 11, 0, 0, tzinfo=timezone.utc))  # the 10:00 runs still queued
    assert first.fired and second.decisions

    found = samples(render_metrics(bench).decode())
    for site in ("alpha.test", "beta.test"):
        for event in ("hourly", "all"):
            fires = sum(1 for d in first.fired + second.fired if (d.site, d.job.event) == (site, event))
            skips = sum(1 for d in second.decisions if (d.site, d.job.event, d.outcome) == (site, event, "skipped"))
            assert value(found, "bench_jobs_scheduler_fires_total", site=site, event=event) == fires > 0
            assert total(found, "bench_jobs_scheduler_skips_total", site=site, event=event) == skips
    assert total(found, "bench_jobs_scheduler_skips_total", site="alpha.test", event="hourly") == 1
