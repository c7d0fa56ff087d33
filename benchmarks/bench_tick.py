"""One scheduler tick over many sites: time and Redis commands when nothing is due and when everything is.

Starts its own redis-server on a unix socket in a temporary folder, builds a bench of N sites x 20 jobs
(one generated app, sites spread over four time zones), and ticks with `now` passed in:

    python benchmarks/bench_tick.py                  # 100 and 1,000 sites
    python benchmarks/bench_tick.py --sites 1000

Plain RQ's `Queue.enqueue_many` of the same number of jobs, in one pipeline, is the baseline for the
everything-due tick (it enqueues without any of the tick's claims, overlap checks or history).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.scheduler.tick import Scheduler

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo")  # whole-hour offsets: all due at :00
CRONS = [f"*/{step} * * * *" for step in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)] + [
    "0 * * * *", "0,30 * * * *", "0-5 * * * *", "0 * * * 0-6", "0 * 1-31 * *", "0 * * 1-12 *",
    "*/5 * * * 1-5,0,6", "0,15,30,45 * * * *", "0 */1 * * *",
]  # fmt: skip
JOBS_PER_SITE = len(CRONS)


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], Path]:
    sock = folder / "redis.sock"
    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    process = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(500):
        if sock.exists():
            try:
                redis.Redis(unix_socket_path=str(sock)).ping()
                return process, sock
            except redis.ConnectionError:
                pass
        time.sleep(0.02)
    process.kill()
    sys.exit("redis-server did not start")


def build_bench(root: Path, sock: Path, sites: int) -> Bench:
    (root / "sites").mkdir(parents=True)
    (root / "sites" / "common_site_config.toml").write_text(
        f'redis_queue = "unix://{sock}"\nbench_id = "tickbench"\napps = ["tick_app"]\nscheduler_tick_interval = 60\n'
    )
    app = root / "apps" / "tick_app"
    app.mkdir(parents=True)
    (app / "__init__.py").write_text("")
    crons = ",\n".join(f'    "{cron}": ["tick_app.jobs.job_{i}"]' for i, cron in enumerate(CRONS))
    (app / "hooks.py").write_text(f"scheduler_events = {{'cron': {{\n{crons}\n}}}}\n")
    for i in range(sites):
        folder = root / "sites" / f"site{i:04d}.test"
        folder.mkdir()
        (folder / "site_config.toml").write_text(f'timezone = "{ZONES[i % len(ZONES)]}"\nscheduler_enabled = true\n')
    return Bench(root)


def commands(conn: redis.Redis) -> int:
    return int(conn.info("stats")["total_commands_processed"])  # type: ignore[index]


def measure(scheduler: Scheduler, conn: redis.Redis, now: datetime) -> tuple[float, int, int]:
    before = commands(conn)
    started = time.perf_counter()
    result = scheduler.tick(now)
    elapsed = time.perf_counter() - started
    return elapsed, commands(conn) - before - 1, len(result.fired)


def plain_rq(conn: redis.Redis, jobs: int) -> float:
    queue = Queue("plain", connection=conn, serializer=JSONSerializer)
    data = [Queue.prepare_data("tick_app.jobs.job_0", kwargs={"site": "x"}) for _ in range(jobs)]
    started = time.perf_counter()
    with conn.pipeline() as pipe:
        queue.enqueue_many(data, pipeline=pipe)
        pipe.execute()
    return time.perf_counter() - started


def run(sites: int, folder: Path, sock: Path) -> None:
    conn = redis.Redis(unix_socket_path=str(sock))
    conn.flushall()
    bench = build_bench(folder / f"bench{sites}", sock, sites)
    use_bench(bench)
    scheduler = Scheduler(bench, connect(load_bench_settings(bench)))
    scheduler.tick(datetime(2026, 1, 5, 9, 59, 30, tzinfo=timezone.utc))  # first sightings
    rows = [
        ("nothing due", *measure(scheduler, conn, datetime(2026, 1, 5, 9, 59, 45, tzinfo=timezone.utc))),
        ("everything due", *measure(scheduler, conn, datetime(2026, 1, 5, 10, 0, 0, tzinfo=timezone.utc))),
        ("nothing due, runs queued", *measure(scheduler, conn, datetime(2026, 1, 5, 10, 0, 30, tzinfo=timezone.utc))),
    ]
    jobs = sites * JOBS_PER_SITE
    print(f"\n{sites} sites x {JOBS_PER_SITE} jobs = {jobs} jobs")
    print(f"  {'tick':<26}{'time':>10}{'commands':>10}{'per site':>10}{'fired':>8}")
    for name, elapsed, count, fired in rows:
        print(f"  {name:<26}{elapsed * 1000:>8.1f} ms{count:>10}{count / sites:>10.1f}{fired:>8}")
    baseline = plain_rq(conn, jobs)
    everything = rows[1][1]
    print(f"  plain RQ enqueue_many of {jobs} jobs in one pipeline: {baseline * 1000:.1f} ms "
          f"(everything-due tick / plain RQ = {everything / baseline:.2f})")  # fmt: skip
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, action="append", help="site counts (default: 100 and 1000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, sock = start_redis(Path(tmp))
        try:
            for sites in args.sites or [100, 1000]:
                run(sites, Path(tmp), sock)
        finally:
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
