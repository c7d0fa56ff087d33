"""The dashboard's pages on a big bench: p50 and p95 per page, against a 200 ms target.

Starts its own redis-server on a unix socket in a temporary folder, builds a bench of 1,000 sites (the tick
benchmark's generated app: 20 scheduled jobs per site), queues 100,000 jobs spread over the sites and the
three queues, fails 1,000 (one per site, with a traceback), gives one site a full scheduler history, then
requests each page in process through Starlette's TestClient (the app and its Redis reads, no network):

    python benchmarks/bench_dashboard.py                       # 1,000 sites, 100,000 jobs, 30 requests a page
    python benchmarks/bench_dashboard.py --sites 100 --jobs 10000 --requests 10

Exit code 1 when a page's p95 misses the target (`--target-ms`), so it can gate a change.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
from rq.job import JobStatus
from rq.results import Result
from starlette.testclient import TestClient

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.jobs import history
from bench_jobs.jobs.enqueue import build_job
from bench_jobs.jobs.push import PendingJob, send
from bench_jobs.scheduler.tick import Scheduler
from bench_jobs.web.app import Dashboard, create_app

sys.path.insert(0, str(Path(__file__).parent))
from bench_tick import build_bench, start_redis

BATCH = 1000
TRACEBACK = 'Traceback (most recent call last):\n  File "tick_app/jobs.py", line 3, in job_0\nValueError: boom\n'


def fill(conn: redis.Redis, bench: Bench, sites: list[str], jobs: int) -> str:
    """Queue `jobs` jobs round-robin over the sites (8 in 10 on default, 1 each on short and long), fail one
    job per site; returns the id of one failed job of the first site."""
    settings = {site: load_site_settings(bench, site) for site in sites}
    pending: list[PendingJob] = []
    for i in range(jobs):
        queue = ("short", "long")[i % 2] if i % 10 == 9 else "default"
        rq_q, job = build_job(
            conn, settings[sites[i % len(sites)]], f"tick_app.jobs.job_{i % 20}", {"n": i}, queue=queue
        )
        pending.append(PendingJob(rq_q, job, at_front=False, deduplicate=False))
        if len(pending) == BATCH:
            send(conn, pending)
            pending = []
    send(conn, pending)
    failed_id = ""
    now = datetime.now(timezone.utc)
    with conn.pipeline(transaction=False) as pipe:
        for site in sites:
            rq_q, job = build_job(conn, settings[site], "tick_app.jobs.job_1", {"fails": True})
            job.origin = rq_q.name
            job.enqueued_at = job.started_at = now - timedelta(seconds=5)
            job.ended_at = now
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            job.save(pipeline=pipe)
            rq_q.failed_job_registry.add(job, ttl=7 * 86400, pipeline=pipe, exc_string=TRACEBACK)
            Result.create_failure(job, ttl=7 * 86400, exc_string=TRACEBACK, pipeline=pipe)
            failed_id = failed_id or job.id
        pipe.execute()
    return failed_id


def give_history(conn: redis.Redis, bench: Bench, site: str) -> None:
    """A full history (HISTORY_LIMIT entries) for `site`, and last runs from one tick of every site."""
    Scheduler(bench, conn).tick(datetime.now(timezone.utc).replace(second=0, microsecond=0))
    entries = [
        history.HistoryEntry(history.iso(datetime.now(timezone.utc)), site, "finished", "tick_app.jobs.job_0", "cron")
    ] * history.HISTORY_LIMIT
    with conn.pipeline(transaction=False) as pipe:
        history.push(pipe, Keys(load_bench_settings(bench).bench_id), site, entries)
        pipe.execute()


def measure(client: TestClient, path: str, requests: int) -> tuple[float, float]:
    for _ in range(2):  # warm caches: templates, config files, imported hooks
        assert client.get(path).status_code == 200, path
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        reply = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert reply.status_code == 200, (path, reply.status_code)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    parser.add_argument("--target-ms", type=float, default=200.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, sock = start_redis(Path(tmp))
        try:
            conn = redis.Redis(unix_socket_path=str(sock))
            bench = build_bench(Path(tmp) / "bench", sock, args.sites)
            use_bench(bench)
            sites = bench.site_names()
            started = time.perf_counter()
            failed_id = fill(conn, bench, sites, args.jobs)
            give_history(conn, bench, sites[0])
            print(f"{args.sites} sites, {args.jobs} queued jobs, {len(sites)} failed "
                  f"(filled in {time.perf_counter() - started:.1f} s)")  # fmt: skip
            site, last = sites[0], sites[-1]
            pages = [
                ("overview", "/"),
                ("sites", "/sites"),
                ("sites, last page", f"/sites?page={max(1, (len(sites) + 99) // 100)}"),
                ("site: pending jobs", f"/sites/{site}"),
                ("site: pending, page 2", f"/sites/{site}?page=2"),
                ("site: last site's pending", f"/sites/{last}"),
                ("site: failed jobs", f"/sites/{site}?status=failed"),
                ("site: filtered by method", f"/sites/{site}?queue=default&method=job_7"),
                ("job (failed, traceback)", f"/sites/{site}/jobs/{failed_id}"),
                ("schedule + history", f"/schedule?site={site}"),
            ]
            missed = []
            with TestClient(create_app(Dashboard(bench)), base_url="http://127.0.0.1") as client:
                print(f"  {'page':<28}{'p50':>10}{'p95':>10}")
                for name, path in pages:
                    p50, p95 = measure(client, path, args.requests)
                    flag = "" if p95 <= args.target_ms else f"  > {args.target_ms:.0f} ms"
                    missed += [name] if flag else []
                    print(f"  {name:<28}{p50:>7.1f} ms{p95:>7.1f} ms{flag}")
            conn.close()
        finally:
            process.terminate()
            process.wait(10)
    if missed:
        print(f"p95 above {args.target_ms:.0f} ms: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
