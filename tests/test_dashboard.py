"""The dashboard's pages and actions, in process (Starlette's TestClient) on the session's real Redis; the
CLI's refusals through the real entry point."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import redis
from support import cli_env, run_cli, start_redis, wait_for

pytest.importorskip("starlette")
from starlette.testclient import TestClient

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_site_settings, read_toml
from bench_jobs.core.context import use_bench
from bench_jobs.web.app import Dashboard, create_app
from bench_jobs.web.security import CSRF_COOKIE, TOKEN_KEY

CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')


ORIGIN = "http://127.0.0.1"


def client_of(bench: Bench, read_only: bool = False, token: str | None = None) -> TestClient:
    """A client that, like a browser on the dashboard's own pages, names the dashboard as its Origin."""
    app = create_app(Dashboard(bench, read_only=read_only, token=token))
    return TestClient(app, base_url=ORIGIN, headers={"Origin": ORIGIN})


@pytest.fixture
def client(bench: Bench) -> Iterator[TestClient]:
    with client_of(bench) as test_client:
        yield test_client


def run_worker(bench: Bench) -> None:
    result = run_cli("worker", "--burst", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def failed_job(bench: Bench) -> str:
    use_bench(bench)
    job_id = bench_jobs.enqueue("sample_app.tasks.fail", message="dashboard boom", site="alpha.test").id
    run_worker(bench)
    return str(job_id)


def csrf_of(page: str) -> str:
    found = CSRF_INPUT.search(page)
    assert found, "no action form with a CSRF token on the page"
    return found.group(1)


def test_overview_shows_each_queue_count_and_doctor(bench: Bench, client: TestClient) -> None:
    use_bench(bench)
    for i in range(3):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"a{i}", site="alpha.test")
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="s", queue="short", site="beta.test")
    page = client.get("/")
    assert page.status_code == 200
    assert re.search(r'data-queue="default">.*?class="n queued">3<', page.text, re.S)
    assert re.search(r'data-queue="short">.*?class="n queued">1<', page.text, re.S)
    assert "redis-version" in page.text or "redis" in page.text
    assert "No scheduler has ticked yet" in page.text


def test_a_page_view_reads_the_queues_counts_once_for_the_page_and_doctors_checks(
    bench: Bench, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The overview's counts serve doctor's workers:<queue> and stale-code checks too, and doctor reads them
    once for both: every page view runs doctor, and the counts read every queue's registries."""
    from bench_jobs.jobs import listings
    from bench_jobs.ops import code_checks, doctor
    from bench_jobs.web import app

    reads: list[str] = []

    def counted(*args: object, **kwargs: object) -> list[listings.QueueStats]:
        reads.append("queue_stats")
        return listings.queue_stats(*args, **kwargs)  # type: ignore[arg-type]

    for module in (app, doctor, code_checks):
        monkeypatch.setattr(module, "queue_stats", counted)
    use_bench(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="a", site="alpha.test")
    page = client.get("/").text
    assert "workers:default" in page and "stale-code" in page
    assert len(reads) == 1
    site = client.get("/sites/alpha.test").text
    assert "workers:default" not in site  # the site page shows its own checks, doctor still runs them all
    assert len(reads) == 2


def test_doctor_on_the_overview_and_the_site_page_counts_a_sites_failed_jobs(bench: Bench, client: TestClient) -> None:
    failed_job(bench)
    overview = client.get("/").text
    assert re.search(r'<tr class="warning">.*?failed-jobs:default</td><td>failed jobs: alpha.test: 1<', overview, re.S)
    assert "scheduler-enabled:beta.test" in overview
    site = client.get("/sites/alpha.test").text
    assert "failed jobs: alpha.test: 1" in site and "hooks:alpha.test" in site and "beta.test" not in site


def test_overview_never_shows_the_redis_password(tmp_path, bench: Bench) -> None:  # type: ignore[no-untyped-def]
    server = start_redis(tmp_path / "pw-redis", password="s3cretpass")
    try:
        common = bench.common_config_path
        text = common.read_text()
        url = text.split('redis_queue = "')[1].split('"')[0]
        common.write_text(text.replace(url, f"unix://:s3cretpass@{server.socket}"))
        with client_of(bench) as test_client:
            page = test_client.get("/")
            assert page.status_code == 200
            assert "s3cretpass" not in page.text
            assert "***" in page.text or "redacted" in page.text.lower()
    finally:
        server.stop()


def test_failed_job_page_shows_traceback_and_requeue_puts_it_back(bench: Bench, client: TestClient) -> None:
    job_id = failed_job(bench)
    listing = client.get("/sites/alpha.test?status=failed")
    assert job_id in listing.text and "dashboard boom" in listing.text
    page = client.get(f"/sites/alpha.test/jobs/{job_id}")
    assert page.status_code == 200
    assert "Traceback" in page.text and "dashboard boom" in page.text and 'id="requeue"' in page.text
    done = client.post(f"/sites/alpha.test/jobs/{job_id}/requeue", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "Requeued 1 job." in done.text
    assert re.search(r'id="status">queued<', done.text)


def test_delete_removes_one_queued_job(bench: Bench, client: TestClient, redis_client: redis.Redis) -> None:
    use_bench(bench)
    keep = bench_jobs.enqueue("sample_app.tasks.echo", record_id="keep", site="alpha.test").id
    gone = bench_jobs.enqueue("sample_app.tasks.echo", record_id="gone", site="alpha.test").id
    page = client.get(f"/sites/alpha.test/jobs/{gone}")
    done = client.post(f"/sites/alpha.test/jobs/{gone}/delete", data={"csrf": csrf_of(page.text)})
    assert "Deleted 1 job" in done.text
    assert redis_client.exists(f"rq:job:{keep}") and not redis_client.exists(f"rq:job:{gone}")
    assert client.get(f"/sites/alpha.test/jobs/{gone}").status_code == 404


def test_scheduler_toggle_writes_the_site_config_and_keeps_comments(bench: Bench, client: TestClient) -> None:
    page = client.get("/sites/alpha.test")
    done = client.post("/sites/alpha.test/scheduler", data={"csrf": csrf_of(page.text), "enabled": "0"})
    assert "Scheduler disabled" in done.text
    path = bench.site_config_path("alpha.test")
    assert read_toml(path)["scheduler_enabled"] is False
    assert "# alpha: a comment the user wrote" in path.read_text()
    assert not load_site_settings(bench, "alpha.test").scheduler_enabled


def test_trigger_and_purge_from_the_site_page(bench: Bench, client: TestClient) -> None:
    page = client.get("/sites/alpha.test")
    done = client.post("/sites/alpha.test/trigger", data={"csrf": csrf_of(page.text), "event": "daily"})
    assert re.search(r"Triggered daily: [1-9]\d* job\(s\) queued", done.text), done.text
    assert "sample_app.tasks.daily" in done.text
    done = client.post("/sites/alpha.test/purge", data={"csrf": csrf_of(page.text), "which": "pending"})
    assert re.search(r"Purged [1-9]\d* pending jobs", done.text)
    assert "No pending jobs" in done.text


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(bench: Bench, client: TestClient) -> None:
    job_id = failed_job(bench)
    client.get("/")  # the browser has its CSRF cookie
    for data in ({}, {"csrf": "forged"}):
        refused = client.post(f"/sites/alpha.test/jobs/{job_id}/requeue", data=data)
        assert refused.status_code == 403 and "CSRF" in refused.text
    refused = client.post("/sites/alpha.test/scheduler", data={"enabled": "0"})
    assert refused.status_code == 403
    assert read_toml(bench.site_config_path("alpha.test"))["scheduler_enabled"] is True
    assert re.search(r'id="status">failed<', client.get(f"/sites/alpha.test/jobs/{job_id}").text)


def test_read_only_has_no_actions(bench: Bench) -> None:
    job_id = failed_job(bench)
    with client_of(bench, read_only=True) as test_client:
        for path in ("/", "/sites", "/sites/alpha.test", f"/sites/alpha.test/jobs/{job_id}", "/schedule"):
            page = test_client.get(path)
            assert page.status_code == 200, path
            assert 'method="post"' not in page.text, path
        csrf = test_client.cookies[CSRF_COOKIE]
        for action in (f"/sites/alpha.test/jobs/{job_id}/requeue", "/sites/alpha.test/scheduler"):
            assert test_client.post(action, data={"csrf": csrf, "enabled": "0"}).status_code in (404, 405)
    assert read_toml(bench.site_config_path("alpha.test"))["scheduler_enabled"] is True


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/sites/nosuch.test", 404),
        ("/sites/a..b", 404),
        ("/sites/%2E%2E", 404),
        ("/sites/alpha.test/jobs/nosuchjob", 404),
        ("/sites/alpha.test/jobs/bench-jobs:testbench:alpha.test:0000", 404),
        ("/sites/beta.test/jobs/%3Cscript%3E", 404),
        ("/schedule?site=nosuch.test", 404),
        ("/nowhere", 404),
        ("/sites/alpha.test?page=abc", 400),
        ("/sites/alpha.test?page=0", 400),
        ("/sites/alpha.test?status=exploded", 400),
        ("/sites/alpha.test?queue=nosuchqueue", 400),
        ("/sites?page=-1", 400),
        ("/sites/alpha.test?page=101", 400),
    ],
)
def test_bad_ids_and_parameters_get_a_404_or_400_page(client: TestClient, path: str, code: int) -> None:
    page = client.get(path)
    assert page.status_code == code, page.text
    assert "Traceback" not in page.text
    assert "<html" in page.text


def test_a_site_page_reads_a_big_queue_in_a_few_calls_filtered_inside_redis(
    bench: Bench, client: TestClient, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    mine = [bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"m{i}", site="alpha.test").id for i in range(3)]
    queue_key = "rq:queue:testbench:default"
    others = [f"testbench-beta_2etest--{i:032x}" for i in range(25_000)]
    for start in range(0, len(others), 5000):
        redis_client.rpush(queue_key, *others[start : start + 5000])
    redis_client.rpush(queue_key, mine[0])  # the list is read by index: an id seen twice is listed once

    def list_reads() -> int:  # LRANGEs, also those a Lua script makes
        return int(redis_client.info("commandstats").get("cmdstat_lrange", {}).get("calls", 0))

    before = list_reads()
    page = client.get("/sites/alpha.test?queue=default")
    assert page.status_code == 200
    assert list_reads() - before <= 4, "a queue of 25,000 ids is read in chunks of 10,000, not pages of 1,000"
    assert all(page.text.count(f">{job_id}</a>") == 1 for job_id in mine)
    assert "beta_2etest" not in page.text


def test_without_a_token_only_a_loopback_host_is_served(client: TestClient) -> None:
    for host in ("evil.example", "evil.example:11380", "10.0.0.7"):
        refused = client.get("/", headers={"Host": host})
        assert refused.status_code == 400 and "answers only to 127.0.0.1" in refused.text, host
    for host in ("127.0.0.1:11380", "localhost", "[::1]:8080"):
        assert client.get("/sites", headers={"Host": host}).status_code == 200, host


def test_a_job_of_another_site_is_not_found_under_this_one(bench: Bench, client: TestClient) -> None:
    job_id = failed_job(bench)
    assert client.get(f"/sites/beta.test/jobs/{job_id}").status_code == 404


def test_schedule_page_lists_jobs_in_words_and_the_history(bench: Bench, client: TestClient) -> None:
    page = client.get("/schedule?site=beta.test")
    assert page.status_code == 200
    assert "sample_app.tasks.daily" in page.text and "other_app" in page.text
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CE", page.text), "next run not in the site's zone"
    assert "No history yet." in page.text


def test_schedule_page_shows_the_history_the_scheduler_and_workers_wrote(bench: Bench, client: TestClient) -> None:
    from datetime import datetime, timezone

    from bench_jobs.core.keys import Keys
    from bench_jobs.jobs import history

    at = history.iso(datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc))
    entries = [
        history.HistoryEntry(at, "alpha.test", "queued", "sample_app.tasks.daily", "daily", slot=at),
        history.HistoryEntry(at, "alpha.test", "failed", "sample_app.tasks.daily", "daily", error="ValueError: x"),
        history.HistoryEntry(at, "alpha.test", "finished", "sample_app.tasks.daily", "daily", duration_s=75.5),
    ]
    with redis.Redis.from_url(load_bench_url(bench)) as conn, conn.pipeline() as pipe:
        history.push(pipe, Keys("testbench"), "alpha.test", entries)
        pipe.execute()
    page = client.get("/schedule?site=alpha.test")
    assert page.status_code == 200, page.text
    assert "ValueError: x" in page.text and "1m 15s" in page.text and "2026-03-01T02:00:00+00:00" in page.text


def load_bench_url(bench: Bench) -> str:
    from bench_jobs.core.config import load_bench_settings

    return load_bench_settings(bench).redis_url


def test_a_token_is_needed_when_one_is_set(bench: Bench) -> None:
    token = "t" * 24
    with client_of(bench, token=token) as test_client:
        page = test_client.get("/")
        assert page.status_code == 401 and "needs its token" in page.text
        assert test_client.post("/login", data={"token": "wrong" * 5}).status_code == 401
        assert test_client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        signed_in = test_client.post("/login", data={"token": token})
        assert signed_in.status_code == 200 and "Queues" in signed_in.text
        assert token not in str(test_client.cookies.values())


def test_metrics_are_served_as_prometheus_text_on_metrics(client: TestClient) -> None:
    from bench_jobs.web.metrics import content_type

    reply = client.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == content_type()
    assert "# TYPE bench_jobs_jobs gauge" in reply.text and "bench_jobs_scrape_duration_seconds" in reply.text


def test_a_non_local_bind_without_a_token_refuses_to_start(bench: Bench) -> None:
    result = run_cli("dashboard", "--host", "0.0.0.0", "--port", "0", bench=bench, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Error: The dashboard would listen on 0.0.0.0 without a token" in result.stderr
    assert "Hint: Pass --new-token" in result.stderr and "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_new_token_is_saved_printed_once_and_required(bench: Bench) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench_jobs", "dashboard", "--host", "0.0.0.0", "--port", str(port), "--new-token"],
        env=cli_env(bench),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        token = read_toml(bench.common_config_path)[TOKEN_KEY]
        assert token in first and "shown this once" in first
        assert f":{port}/" in process.stdout.readline()
        assert not bench.common_config_path.stat().st_mode & 0o007
        wait_for(lambda: _answers(port), 20, "the dashboard to answer")
        assert http_status(f"http://127.0.0.1:{port}/") == 401
        assert http_status(f"http://127.0.0.1:{port}/", {"Authorization": f"Bearer {token}"}) == 200
    finally:
        process.terminate()
        process.wait(10)
    again = run_cli("dashboard", "--host", "127.0.0.1", "--port", "-5", bench=bench)
    assert again.returncode == 2 and token not in again.stdout + again.stderr


def test_sigterm_while_the_dashboard_starts_is_a_clean_stop(bench: Bench) -> None:
    """`start` may stop its processes just after starting them: the dashboard then exits 0, not killed."""
    for _ in range(2):
        process = subprocess.Popen(
            [sys.executable, "-m", "bench_jobs", "dashboard", "--port", "0"],
            env=cli_env(bench),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        assert "Dashboard at http://127.0.0.1:" in process.stdout.readline()
        process.send_signal(signal.SIGTERM)  # while uvicorn and the app are still being imported
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output


@pytest.mark.parametrize(
    ("name", "returncode", "stopping", "exit_code"),
    [
        ("dashboard", -signal.SIGTERM, True, 0),  # the stop's SIGTERM came before its handler: nothing lost
        ("dashboard", -signal.SIGTERM, False, 1),  # killed by someone else while the bench ran
        ("dashboard", 1, True, 1),
        # Before its warm-shutdown handler, a worker has taken no job: the stop's SIGTERM lost nothing.
        ("worker-short", -signal.SIGTERM, True, 0),
        ("worker-short", -signal.SIGTERM, False, 1),
        ("worker-short", 1, True, 1),
    ],
)
def test_start_excuses_a_process_killed_by_its_own_stop_only(
    name: str, returncode: int, stopping: bool, exit_code: int
) -> None:
    import io

    from honcho.printer import Printer

    from bench_jobs.ops.start import BenchManager

    manager = BenchManager(Printer(io.StringIO()), grace_s=1)
    manager._processes = {name: {"returncode": returncode}, "schedule": {"returncode": 0}}
    manager.stop_started = time.monotonic() if stopping else None
    assert manager.exit_code == exit_code


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        time.sleep(0.05)
        return False


def enqueue_mix(bench: Bench) -> dict[str, list[str]]:
    """Jobs of both sites on two queues, run by a real burst worker: alpha finishes 2 on default (one named)
    and 1 on short; alpha fails 2 on default and 1 on short; beta fails 1 on default."""
    use_bench(bench)

    def put(method: str, site: str, queue: str = "default", **kwargs: object) -> str:
        return str(bench_jobs.enqueue(f"sample_app.tasks.{method}", site=site, queue=queue, **kwargs).id)

    jobs = {
        "alpha_done": [
            put("echo", "alpha.test", record_id="r1", job_name="nightly-report"),
            put("echo", "alpha.test", record_id="r2"),
        ],
        "alpha_short_done": [put("echo", "alpha.test", "short", record_id="s1")],
        "alpha_failed": [put("fail", "alpha.test", message="a1"), put("fail", "alpha.test", message="a2")],
        "alpha_short_failed": [put("fail", "alpha.test", "short", message="a3")],
        "beta_failed": [put("fail", "beta.test", message="b1")],
    }
    run_worker(bench)
    return jobs


def test_a_real_worker_run_counts_finished_and_failed_jobs_per_queue_and_site_for_the_charts(
    bench: Bench, client: TestClient, redis_client: redis.Redis
) -> None:
    from datetime import datetime, timezone

    from bench_jobs.jobs.throughput import read_throughput

    enqueue_mix(bench)
    now = datetime.now(timezone.utc)
    every = read_throughput(redis_client, "testbench", ["default", "short"], now)
    assert (every.finished, every.failed) == (3, 4)
    assert sum(bar.finished for bar in every.per_queue["short"]) == 1
    assert sum(bar.failed for bar in every.per_queue["default"]) == 3
    alpha = read_throughput(redis_client, "testbench", ["default"], now, "24h", site="alpha.test")
    assert (alpha.finished, alpha.failed) == (2, 2)
    assert len(alpha.bars) == 48 and len(every.bars) == 60

    overview = client.get("/").text
    assert '<svg id="throughput"' in overview and "(3 finished, 4 failed, last 1h)" in overview
    assert re.search(r'data-queue="short">.*?<svg class="spark"', overview, re.S)
    assert re.search(r"<title>[^<]*: 3 finished, 4 failed</title>", overview), "one bar holds the minute's jobs"
    site = client.get("/sites/beta.test?span=3d").text
    assert '<svg id="throughput"' in site and "(0 finished, 1 failed, last 3d)" in site
    assert client.get("/?span=7d").status_code == 400


def test_the_charts_sum_each_minute_into_its_own_bar_and_leave_out_minutes_outside_the_span(
    redis_client: redis.Redis,
) -> None:
    """Minutes at a bar's first and last minute, at the span's first minute and just before it, by queue and
    by site: each count lands in its bar (Redis sums the minutes per bar)."""
    from datetime import datetime, timedelta, timezone

    from bench_jobs.jobs.throughput import count_outcome, read_throughput

    now = datetime(2026, 1, 1, 12, 10, 30, tzinfo=timezone.utc)
    first_bar = datetime(2025, 12, 31, 12, 30, tzinfo=timezone.utc)  # of the 24h span (48 bars of 30 min)

    def count(at: datetime, queue: str, ok: bool, times: int = 1, site: str | None = None) -> None:
        for _ in range(times):
            count_outcome(redis_client, "bars", site, queue, ok, at.timestamp())

    count(first_bar - timedelta(minutes=1), "default", True, 5)  # before the span
    count(first_bar, "short", True, site="alpha.test")  # bar 0
    count(datetime(2026, 1, 1, 11, 59, 59, tzinfo=timezone.utc), "default", True, 2)  # bar 46's last minute
    count(datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc), "default", False)  # bar 47's first minute
    count(now, "default", True, site="beta.test")  # bar 47, the minute of now
    count(now, "long", False, 7)  # a queue not asked for
    day = read_throughput(redis_client, "bars", ["default", "short"], now, "24h")
    assert [(bar.finished, bar.failed) for bar in day.bars] == [(1, 0), *[(0, 0)] * 45, (2, 0), (1, 1)]
    assert day.bars[46].start == datetime(2026, 1, 1, 11, 30, tzinfo=timezone.utc)
    assert [bar.finished for bar in day.per_queue["short"]] == [1, *[0] * 47]
    assert (sum(bar.finished for bar in day.per_queue["default"]), day.failed) == (3, 1)
    alpha = read_throughput(redis_client, "bars", ["short", "default"], now, "24h", site="alpha.test")
    assert (alpha.bars[0].finished, alpha.finished, alpha.failed) == (1, 1, 0)
    hour = read_throughput(redis_client, "bars", ["default", "long"], now)  # 60 bars of one minute
    assert [(bar.finished, bar.failed) for bar in hour.bars[-11:]] == [(0, 1), *[(0, 0)] * 9, (1, 7)]
    assert hour.bars[-1].start == datetime(2026, 1, 1, 12, 10, tzinfo=timezone.utc)
    assert hour.bars[-12].finished == 2
    redis_client.config_resetstat()  # a script holds Redis: 3 days (4,320 minutes) are read in 12 calls, not one
    days = read_throughput(redis_client, "bars", ["default", "short"], now, "3d")
    assert redis_client.info("commandstats")["cmdstat_evalsha"]["calls"] == 12
    assert (days.finished, days.failed, days.bars[-1].failed, days.bars[-2].finished) == (9, 1, 1, 2)
    assert [(bar.finished, bar.failed) for bar in read_throughput(redis_client, "bars", [], now).bars] == [(0, 0)] * 60


def test_a_job_whose_result_is_kept_0_s_is_counted_finished_all_the_same(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """RQ writes no status for a result kept 0 s (the job is deleted at once): the chart still counts it."""
    from datetime import datetime, timezone

    from bench_jobs.core.config_writer import update_config_file
    from bench_jobs.jobs.throughput import read_throughput

    update_config_file(bench.common_config_path, {"job_result_ttl": 0})
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="kept-0-s", site="alpha.test")
    run_worker(bench)
    assert not redis_client.exists(f"rq:job:{job.id}"), "kept 0 s: deleted as it finished"
    counted = read_throughput(redis_client, "testbench", ["default"], datetime.now(timezone.utc))
    assert (counted.finished, counted.failed) == (1, 0)


def test_counts_on_the_overview_link_to_their_lists_of_every_site(bench: Bench, client: TestClient) -> None:
    jobs = enqueue_mix(bench)
    overview = client.get("/").text
    link = re.search(r'data-queue="default">.*?<a href="([^"]+)" class="n failed">3<', overview, re.S)
    assert link and link.group(1) == "/jobs?queue=default&status=failed"
    listing = client.get(link.group(1)).text
    for job_id in [*jobs["alpha_failed"], *jobs["beta_failed"]]:
        assert f">{job_id}</a>" in listing
    assert jobs["alpha_short_failed"][0] not in listing and '<a href="/sites/beta.test">beta.test</a>' in listing


def test_finished_jobs_are_listed_with_their_result_and_job_name(bench: Bench, client: TestClient) -> None:
    import html

    jobs = enqueue_mix(bench)
    listing = client.get("/sites/alpha.test?status=finished&queue=default")
    assert listing.status_code == 200
    text = html.unescape(listing.text)
    for job_id in jobs["alpha_done"]:
        assert f">{job_id}</a>" in text
    assert '"record_id": "r1"' in text and '"record_id": "r2"' in text and "<td>nightly-report</td>" in text
    assert jobs["alpha_short_done"][0] not in text
    page = html.unescape(client.get(f"/sites/alpha.test/jobs/{jobs['alpha_done'][0]}").text)
    assert re.search(r'<pre id="result">\{"record_id": "r1", "site": "alpha.test", "extra": \{\}\}</pre>', page)


def test_a_long_result_is_cut_in_the_list_and_read_whole_on_the_job_page(bench: Bench, client: TestClient) -> None:
    import html

    from bench_jobs.jobs.finished import LISTED_RESULT_CHARS

    use_bench(bench)
    long_id = "x" * 5000
    job_id = bench_jobs.enqueue("sample_app.tasks.echo", record_id=long_id, site="alpha.test").id
    run_worker(bench)
    listing = html.unescape(client.get("/sites/alpha.test?status=finished").text)
    shown = re.search(r'<td class="result"><code>(.*?)</code>', listing, re.S)
    assert shown and shown.group(1).endswith("…") and len(shown.group(1)) <= LISTED_RESULT_CHARS + 4
    assert long_id in html.unescape(client.get(f"/sites/alpha.test/jobs/{job_id}").text)


def test_requeue_all_failed_moves_every_failed_job_of_that_site_and_queue_and_leaves_the_others(
    bench: Bench, client: TestClient, redis_client: redis.Redis
) -> None:
    jobs = enqueue_mix(bench)

    def status(job_id: str) -> str:
        return (redis_client.hget(f"rq:job:{job_id}", "status") or b"").decode()

    page = client.get("/sites/alpha.test?status=failed&queue=default")
    assert 'id="requeue-all"' in page.text and "return confirm(" in page.text
    done = client.post("/sites/alpha.test/requeue", data={"csrf": csrf_of(page.text), "queue": "default"})
    assert done.status_code == 200 and "Requeued 2 failed job(s) of queue default." in done.text
    assert [status(job_id) for job_id in jobs["alpha_failed"]] == ["queued", "queued"]
    assert status(jobs["alpha_short_failed"][0]) == "failed" and status(jobs["beta_failed"][0]) == "failed"
    assert set(jobs["alpha_failed"]) <= {m.decode() for m in redis_client.lrange("rq:queue:testbench:default", 0, -1)}

    every = client.get("/jobs?status=failed&queue=short")
    done = client.post("/requeue", data={"csrf": csrf_of(every.text), "queue": "short"})
    assert "Requeued 1 failed job(s) of queue short." in done.text
    assert status(jobs["alpha_short_failed"][0]) == "queued" and status(jobs["beta_failed"][0]) == "failed"
    bad = client.post("/sites/alpha.test/requeue", data={"csrf": csrf_of(every.text), "queue": "nosuch"})
    assert bad.status_code == 400


def test_requeue_all_is_refused_read_only_and_without_a_csrf_token(bench: Bench, client: TestClient) -> None:
    jobs = enqueue_mix(bench)
    assert client.post("/sites/alpha.test/requeue", data={"queue": "default"}).status_code == 403
    with client_of(bench, read_only=True) as read_only:
        assert 'id="requeue-all"' not in read_only.get("/sites/alpha.test?status=failed").text
        assert read_only.post("/requeue", data={}).status_code == 405
    assert "Requeue" not in client.get(f"/sites/alpha.test/jobs/{jobs['alpha_done'][0]}").text


def test_the_overview_shows_each_workers_finished_and_failed_counts_and_uptime(
    bench: Bench,
    client: TestClient,
    workers,
    redis_client: redis.Redis,  # type: ignore[no-untyped-def]
) -> None:
    use_bench(bench)
    for i in range(2):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"w{i}", site="alpha.test", queue="long")
    bench_jobs.enqueue("sample_app.tasks.fail", message="w", site="alpha.test", queue="long")
    workers("--queue", "long")

    def row() -> str | None:
        found = re.search(
            r"<tr><td>testbench\.[0-9a-f]{32}</td><td>testbench:long</td>.*?</tr>", client.get("/").text, re.S
        )
        return found.group(0) if found and 'class="n failed">1<' in found.group(0) else None

    shown = wait_for(row, 60, "the worker's row with its counts")
    assert 'class="n processed">2<' in shown and 'class="n failed">1<' in shown
    assert re.search(r'class="uptime">\d+s<', shown)


def test_hints_naming_a_command_link_to_the_page_that_does_the_same(bench: Bench, client: TestClient) -> None:
    from bench_jobs.core.config_writer import update_config_file

    failed_job(bench)
    update_config_file(bench.site_config_path("beta.test"), {"scheduler_enabled": False})
    overview = client.get("/").text
    assert '<a href="/sites/alpha.test?status=failed">bench-jobs --site alpha.test show-failed-jobs</a>' in overview
    assert '<a href="/sites/beta.test">bench-jobs --site beta.test enable-scheduler</a>' in overview


def test_history_shows_one_row_per_run_with_its_duration(bench: Bench, client: TestClient) -> None:
    from datetime import datetime, timezone

    from bench_jobs.core.keys import Keys
    from bench_jobs.jobs import history

    def at(second: int) -> str:
        return history.iso(datetime(2026, 3, 1, 2, 0, second, tzinfo=timezone.utc))

    def entry(second: int, status: str, job_id: str | None, **more: object) -> history.HistoryEntry:
        return history.HistoryEntry(at(second), "alpha.test", status, "sample_app.tasks.daily", "daily", job_id, **more)  # type: ignore[arg-type]

    oldest_first = [
        entry(0, "queued", "run-a", slot=at(0)),
        entry(1, "started", "run-a"),
        entry(1, "finished", "run-a", duration_s=0.004),
        entry(10, "queued", "run-b", slot=at(10)),
        entry(11, "skipped", "run-b", slot=at(11), cause="previous_started", blocked_by="run-b"),
        entry(12, "started", "run-b"),
        entry(14, "failed", "run-b", duration_s=2.5, error="ValueError: x"),
        entry(20, "queued", "run-c", slot=at(20)),
    ]
    with redis.Redis.from_url(load_bench_url(bench)) as conn, conn.pipeline() as pipe:
        history.push(pipe, Keys("testbench"), "alpha.test", oldest_first)
        pipe.execute()
    page = client.get("/schedule?site=alpha.test").text
    rows = re.findall(r'<tr class="run">(.*?)</tr>', page, re.S)
    statuses = [re.search(r'class="badge (\w+)"', row).group(1) for row in rows]  # type: ignore[union-attr]
    assert statuses == ["queued", "skipped", "failed", "finished"], statuses
    assert '<td class="n duration">4 ms</td>' in rows[3] and at(0) in rows[3] and at(1)[11:19] in rows[3]
    assert '<td class="n duration">2.5s</td>' in rows[2] and "ValueError: x" in rows[2] and at(10) in rows[2]
    assert "0.0s" not in page


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0004, "<1 ms"), (0.004, "4 ms"), (0.25, "250 ms"), (0.0, "0 ms"), (2.25, "2.2s"), (75.5, "1m 15s")],
)
def test_durations_read_in_milliseconds_under_a_second(seconds: float | None, shown: str) -> None:
    from bench_jobs.web.render import _duration

    assert _duration(seconds) == shown
