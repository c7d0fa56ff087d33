"""One Prometheus scrape of a big bench: 1,000 sites, 100,000 queued jobs, 3,000 recent finished jobs and the
scheduler's counters of every site, next to `show-queue --json` (the per-queue counts alone) and `rq info`.

    python benchmarks/bench_metrics.py               # 1,000 sites, 100,000 jobs, median of 5
    python benchmarks/bench_metrics.py --sites 100 --jobs 20000 --runs 3

`render_metrics` in this process is what the dashboard's /metrics pays per scrape (the target: under 1 s);
the commands run as fresh processes (what a cron job pays). Starts its own redis-server on a unix socket in a
temporary folder, like benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from bench_cli import fill, time_command
from harness import SITE, Environment, HarnessError, benchmark_environment, find_redis_server, worker_env

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.keys import Keys
from bench_jobs.jobs import enqueue as jobs
from bench_jobs.jobs.history import HistoryEntry, iso, push
from bench_jobs.scheduler.leader import Heartbeat, write_heartbeat
from bench_jobs.web.metrics import render_metrics

TARGET_S = 1.0  # one scrape of 1,000 sites and 100,000 queued jobs
FINISHED = 3000  # finished jobs (1,000 per queue: the whole duration sample)
EVENTS = ("all", "hourly", "daily")


def add_history(env: Environment, names: Sequence[str]) -> None:
    """A finished job per queue slot (in the finished registries) and, for every site, a fire, a skip and an
    outcome per event (the scheduler's counters), and a fresh heartbeat."""
    bench = Bench(env.bench_root)
    settings = load_site_settings(bench, SITE)
    conn = connect(settings.bench)
    now = datetime.now(timezone.utc)
    with conn.pipeline(transaction=False) as pipe:
        for i in range(FINISHED):
            queue, job = jobs.build_job(
                conn, settings, "noop_app.tasks.noop", {"x": i}, queue=("short", "default", "long")[i % 3]
            )
            job.started_at = now - timedelta(seconds=i % 90 + 1)
            job.ended_at = now
            job.set_status("finished", pipeline=pipe)
            job.save(pipeline=pipe)
            pipe.zadd(queue.finished_job_registry.key, {job.id: now.timestamp() + 600})
        keys = Keys(settings.bench.bench_id)
        for site in names:
            entries = [
                HistoryEntry(iso(now), site, status, "noop_app.tasks.noop", event)
                for event in EVENTS
                for status in ("queued", "skipped", "finished")
            ]
            push(pipe, keys, site, entries)
        pipe.execute()
    write_heartbeat(conn, Keys(settings.bench.bench_id), Heartbeat(iso(now), "bench", 1, True, 60, 0.01, 0.5))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        binary = find_redis_server()
        with benchmark_environment(binary) as env:
            started = time.perf_counter()
            names = fill(env, args.sites, args.jobs)
            add_history(env, names)
            print(f"{len(names)} sites, {args.jobs:,} queued jobs (filled in {time.perf_counter() - started:.1f} s)")
            bench = Bench(env.bench_root)
            connect(load_bench_settings(bench))  # the dashboard's connection is open before its first scrape
            scrapes = []
            for _ in range(args.runs):
                started = time.perf_counter()
                text = render_metrics(bench)
                scrapes.append(time.perf_counter() - started)
            samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
            print(f"\none scrape: {len(text) / 1e6:.1f} MB, {samples:,} samples")
            child_env = worker_env(env.folder, BENCH_JOBS_BENCH=str(env.bench_root))
            cli = [sys.executable, "-m", "bench_jobs"]
            rows = [
                ("bench-jobs metrics", [*cli, "metrics"]),
                ("bench-jobs show-queue --json", [*cli, "show-queue", "--json"]),
                ("rq info (plain RQ, same Redis)", [sys.executable, "-m", "rq.cli", "info", "--url", env.redis.url]),
            ]
            scrape_s = statistics.median(scrapes)
            print(f"\n{'measurement':44s} {'median':>8s}  exit")
            print(f"{'render_metrics (a /metrics scrape)':44s} {scrape_s * 1000:6.0f} ms  -")
            for label, command in rows:
                seconds, code = time_command(command, child_env, args.runs)
                print(f"{label:44s} {seconds * 1000:6.0f} ms  {code}")
            verdict = "ok" if scrape_s < TARGET_S else "MISSED"
            print(f"\nscrape target < {TARGET_S * 1000:.0f} ms: {verdict} ({scrape_s * 1000:.0f} ms)")
            return 0 if scrape_s < TARGET_S else 1
    except HarnessError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
