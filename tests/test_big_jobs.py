"""Big and forged payloads (issue 16, item 5): listings read a few small fields, never a job's payload; what
is inflated is capped (a 100 KB zlib bomb that inflates past MAX_INFLATED_BYTES); long values are cut with a
way to see them whole; one slow dashboard page does not hold up another."""

from __future__ import annotations

import base64
import json
import threading
import time
import tracemalloc
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
from rq.exceptions import DeserializationError
from rq.serializers import JSONSerializer
from support import run_cli

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import JOB_FUNCTION, new_job_id
from bench_jobs.jobs.brief import BRIEF_CHARS
from bench_jobs.jobs.listings import failed_jobs, job_detail, pending_jobs, results_key
from bench_jobs.jobs.payload import MAX_INFLATED_BYTES, PayloadTooLarge, inflate
from bench_jobs.jobs.rq_job import BenchJob

QUEUE = "testbench:default"
MB = 1024 * 1024


@pytest.fixture
def alpha(bench: Bench) -> Iterator[Bench]:
    use_bench(bench)
    with bench_jobs.site_context("alpha.test"):
        yield bench


def zlib_bomb(inflated_bytes: int) -> bytes:
    """zlib data that inflates to `inflated_bytes` zero bytes, made without holding them."""
    packer = zlib.compressobj(9)
    block = bytes(MB)
    parts = [packer.compress(block) for _ in range(inflated_bytes // MB)]
    return b"".join([*parts, packer.flush()])


def peak_bytes(call: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def forge(client: redis.Redis, data: bytes, status: str = "queued") -> str:
    job_id = new_job_id("testbench", "alpha.test")
    now = "2026-01-01T00:00:00.000000Z"
    fields = {"data": data, "origin": QUEUE, "status": status, "created_at": now, "enqueued_at": now, "timeout": 60}
    client.hset(f"rq:job:{job_id}", mapping=fields)
    client.rpush(f"rq:queue:{QUEUE}", job_id)
    client.sadd("rq:queues", f"rq:queue:{QUEUE}")
    return job_id


def test_a_listing_of_jobs_with_1_mb_arguments_reads_none_of_them(alpha: Bench, redis_client: redis.Redis) -> None:
    for i in range(40):
        bench_jobs.enqueue("sample_app.tasks.echo", job_name=f"big {i}", record_id="x" * MB)
    settings = load_bench_settings(alpha)
    jobs, peak = peak_bytes(lambda: pending_jobs(redis_client, settings, ["alpha.test"], limit=None))
    assert [job.method for job in jobs] == ["sample_app.tasks.echo"] * 40
    assert jobs[0].job_name == "big 0"
    assert peak < 2 * MB, f"listing 40 jobs held {peak / MB:.1f} MB: it inflated their payloads"


def test_a_job_made_before_the_brief_fields_is_listed_from_its_small_payload(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    job = bench_jobs.enqueue("sample_app.tasks.echo", job_name="old", record_id="r")
    assert job is not None
    redis_client.hdel(f"rq:job:{job.id}", "bj_site", "bj_method", "bj_job_name", "bj_event")
    (summary,) = pending_jobs(redis_client, load_bench_settings(alpha), ["alpha.test"])
    assert (summary.method, summary.job_name, summary.site) == ("sample_app.tasks.echo", "old", "alpha.test")


def test_long_names_are_cut_in_listings_and_whole_on_the_job_page(alpha: Bench, redis_client: redis.Redis) -> None:
    job = bench_jobs.enqueue("sample_app.tasks.echo", job_name="n" * 5000, record_id="r")
    assert job is not None
    settings = load_bench_settings(alpha)
    (summary,) = pending_jobs(redis_client, settings, ["alpha.test"])
    assert summary.job_name is not None and len(summary.job_name) == BRIEF_CHARS and summary.job_name.endswith("…")
    assert job_detail(redis_client, settings, job.id).summary.job_name == "n" * 5000


def test_inflating_is_capped() -> None:
    assert inflate(zlib.compress(b"x" * 1000)) == b"x" * 1000
    assert inflate(b"not zlib at all") == b"not zlib at all"
    bomb = zlib_bomb(MAX_INFLATED_BYTES + MB)
    assert len(bomb) < 200 * 1024
    with pytest.raises(PayloadTooLarge, match=f"inflates past {MAX_INFLATED_BYTES} bytes"):
        inflate(bomb)


def test_a_zlib_bomb_in_a_job_is_listed_and_refused_without_inflating_it(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    job_id = forge(redis_client, zlib_bomb(MAX_INFLATED_BYTES * 4))
    settings = load_bench_settings(alpha)
    jobs, peak = peak_bytes(lambda: pending_jobs(redis_client, settings, ["alpha.test"]))
    assert [(job.id, job.method) for job in jobs] == [(job_id, None)]
    assert peak < 4 * MB
    (job,) = BenchJob.fetch_many([job_id], connection=redis_client, serializer=JSONSerializer)
    assert job is not None
    with pytest.raises(DeserializationError, match="inflates past"):
        job.kwargs  # noqa: B018
    detail, peak = peak_bytes(lambda: job_detail(redis_client, settings, job_id))
    assert detail.kwargs == {} and peak < MAX_INFLATED_BYTES + 8 * MB


@pytest.mark.slow
def test_a_worker_fails_a_zlib_bomb_with_its_reason_and_goes_on(alpha: Bench, redis_client: redis.Redis) -> None:
    bomb = forge(redis_client, zlib_bomb(MAX_INFLATED_BYTES * 4))
    after = bench_jobs.enqueue("sample_app.tasks.echo", record_id="after the bomb")
    assert after is not None
    result = run_cli("worker", "--burst", "--queue", "default", bench=alpha, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert redis_client.hget(f"rq:job:{bomb}", "status") == b"failed"
    assert after.get_status(refresh=True) == "finished"
    shown = run_cli("--site", "alpha.test", "show-failed-jobs", "--json", bench=alpha)
    errors = {job["id"]: job["error"] for job in json.loads(shown.stdout)["jobs"]}
    assert "inflates past" in (errors.get(bomb) or ""), errors


def test_a_zlib_bomb_as_a_traceback_does_not_break_the_failed_listing(alpha: Bench, redis_client: redis.Redis) -> None:
    job_id = forge(redis_client, JSONSerializer.dumps((JOB_FUNCTION, None, [], {"method": "m"})), status="failed")
    redis_client.lrem(f"rq:queue:{QUEUE}", 0, job_id)
    redis_client.zadd(f"rq:failed:{QUEUE}", {job_id: time.time() + 3600})
    exc = base64.b64encode(zlib_bomb(MAX_INFLATED_BYTES * 2)).decode()
    redis_client.xadd(results_key(job_id), {"type": 2, "exc_string": exc})
    settings = load_bench_settings(alpha)
    jobs, peak = peak_bytes(lambda: failed_jobs(redis_client, settings, ["alpha.test"]))
    assert [(job.id, job.error) for job in jobs] == [(job_id, "(its traceback in Redis cannot be read)")]
    assert peak < 8 * MB


def test_a_job_page_shows_the_first_64_kb_of_its_arguments_and_links_to_the_whole(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    from test_dashboard import client_of

    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="x" * MB)
    assert job is not None
    with client_of(alpha) as client:
        page = client.get(f"/sites/alpha.test/jobs/{job.id}")
        assert page.status_code == 200 and len(page.content) < 100 * 1024
        assert 'id="kwargs-whole"' in page.text and "setInterval" in page.text
        whole = client.get(f"/sites/alpha.test/jobs/{job.id}?whole=1")
        assert len(whole.content) > MB and "setInterval" not in whole.text


@pytest.mark.slow
def test_a_slow_page_does_not_hold_up_metrics(alpha: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard under uvicorn: while one site page takes 3 s in Redis, /metrics answers at once."""
    import uvicorn

    from bench_jobs.web import reads
    from bench_jobs.web.app import Dashboard, create_app

    real = reads.site_jobs

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(3)
        return real(*args, **kwargs)

    monkeypatch.setattr(reads, "site_jobs", slow)
    server = uvicorn.Server(uvicorn.Config(create_app(Dashboard(alpha)), port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        slow_page = threading.Thread(target=lambda: urllib.request.urlopen(base + "/sites/alpha.test", timeout=30))
        slow_page.start()
        time.sleep(0.3)
        started = time.monotonic()
        with urllib.request.urlopen(base + "/metrics", timeout=30) as reply:
            assert reply.status == 200
        assert time.monotonic() - started < 2, "/metrics waited behind the slow page"
        slow_page.join()
    finally:
        server.should_exit = True
        thread.join(10)


def test_show_pending_jobs_cuts_long_names(alpha: Bench) -> None:
    bench_jobs.enqueue("sample_app.tasks.echo", job_name="n" * 5000, record_id="r")
    result = run_cli("--site", "alpha.test", "show-pending-jobs", "--json", bench=alpha)
    assert result.returncode == 0, result.stderr
    (job,) = json.loads(result.stdout)["jobs"]
    assert len(job["job_name"]) == BRIEF_CHARS
    assert datetime.fromisoformat(job["enqueued_at"]) <= datetime.now(timezone.utc)
