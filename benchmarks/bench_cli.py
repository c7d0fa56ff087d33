"""CLI latency on a big bench: 100 sites and 100,000 queued jobs, next to `rq info` on the same Redis.

    python benchmarks/bench_cli.py                   # 100 sites, 100,000 jobs, median of 5 runs
    python benchmarks/bench_cli.py --jobs 20000 --runs 3

Each command runs as a fresh process (what an operator or a monitor pays), with a warm bytecode cache.
Starts its own redis-server on a unix socket in a temporary folder, like benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from harness import SITE, Environment, HarnessError, benchmark_environment, find_redis_server, worker_env

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_site_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.jobs import enqueue as jobs
from bench_jobs.jobs import push

BATCH = 2000
TARGET_S = 0.5  # doctor on 100 sites x 100,000 queued jobs


def fill(env: Environment, sites: int, job_count: int) -> list[str]:
    """Add sites up to `sites` and queue `job_count` no-op jobs spread over them and the three queues."""
    bench = Bench(env.bench_root)
    for index in range(sites - 1):
        folder = bench.sites_dir / f"site{index:03d}.local"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "site_config.toml").write_text('apps = ["noop_app"]\ntimezone = "UTC"\nscheduler_enabled = true\n')
    use_bench(bench)
    names = bench.site_names()
    settings = {name: load_site_settings(bench, name) for name in names}
    conn = connect(settings[SITE].bench)
    pending: list[push.PendingJob] = []
    for i in range(job_count):
        site = settings[names[i % len(names)]]
        queue, job = jobs.build_job(
            conn, site, "noop_app.tasks.noop", {"x": i}, queue=("short", "default", "long")[i % 3]
        )
        pending.append(push.PendingJob(queue, job, False, False))
        if len(pending) == BATCH:
            push.send(conn, pending)
            pending = []
    push.send(conn, pending)
    return names


def time_command(argv: Sequence[str], env: dict[str, str], runs: int) -> tuple[float, int]:
    """Median wall time of `argv` over `runs` fresh processes, and its exit code."""
    subprocess.run(argv, env=env, capture_output=True, timeout=120)  # warms the bytecode cache
    times, code = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(argv, env=env, capture_output=True, timeout=120)
        times.append(time.perf_counter() - started)
        code = result.returncode
    return statistics.median(times), code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        binary = find_redis_server()
        with benchmark_environment(binary) as env:
            started = time.perf_counter()
            names = fill(env, args.sites, args.jobs)
            print(f"{len(names)} sites, {args.jobs:,} queued jobs (filled in {time.perf_counter() - started:.1f} s)")
            child_env = worker_env(env.folder, BENCH_JOBS_BENCH=str(env.bench_root))
            cli = [sys.executable, "-m", "bench_jobs"]
            rows = [
                ("bench-jobs --help", [*cli, "--help"]),
                ("bench-jobs --site all doctor --json", [*cli, "--site", "all", "doctor", "--json"]),
                ("bench-jobs show-queue --json", [*cli, "show-queue", "--json"]),
                (
                    f"bench-jobs --site {names[1]} show-pending-jobs --json",
                    [*cli, "--site", names[1], "show-pending-jobs", "--json"],
                ),
                ("rq info (plain RQ, same Redis)", [sys.executable, "-m", "rq.cli", "info", "--url", env.redis.url]),
            ]
            print(f"\n{'command':58s} {'median':>8s}  exit")
            figures = {}
            for label, command in rows:
                seconds, code = time_command(command, child_env, args.runs)
                figures[label] = seconds
                print(f"{label:58s} {seconds * 1000:6.0f} ms  {code}")
            doctor_s = figures["bench-jobs --site all doctor --json"]
            verdict = "ok" if doctor_s < TARGET_S else "MISSED"
            print(
                f"\ndoctor target < {TARGET_S * 1000:.0f} ms: {verdict} ({doctor_s * 1000:.0f} ms); "
                "doctor exits 1 here because no scheduler or worker runs."
            )
    except HarnessError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
