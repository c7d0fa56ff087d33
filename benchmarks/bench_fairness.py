"""Many sites on shared workers, bench-jobs against plain RQ side by side in one run:

- fairness: BIG jobs of one site are queued, then SMALL jobs of another; one worker serves the queue. Where do
  the small site's jobs end up in the run order, and how long do they wait?
- idle pick-up: a worker idles, one job is queued; how long from enqueue to the job's start (p50/p95)?
- idle cost: Redis commands per second that one idle worker (and what it forks) sends.

    python benchmarks/bench_fairness.py            # 3,000 + 10 jobs, 30 pick-ups
    python benchmarks/bench_fairness.py --quick    # 300 + 10, 10 pick-ups

Exit codes: 0 done, 1 a benchmark failed, 2 cannot run (no redis-server), 130 interrupted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness import (
    NOOP_METHOD,
    SITE,
    Environment,
    HarnessError,
    Interrupted,
    benchmark_environment,
    find_redis_server,
    worker_env,
)
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from run import RQ_QUEUE, Row, render, use_bench_in_this_process  # run.py imports this module inside main()

import bench_jobs

EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN, EXIT_INTERRUPTED = 0, 1, 2, 130
SMALL_SITE = "small.local"
IDLE_BEFORE_S = 0.5  # between pick-ups: long enough for the worker to be waiting again
IDLE_WINDOW_S = 5.0
WAIT_S = 600.0


def add_small_site(env: Environment) -> None:
    folder = env.bench_root / "sites" / SMALL_SITE
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site_config.toml").write_text((env.bench_root / "sites" / SITE / "site_config.toml").read_text())


def bench_worker(env: Environment, *extra: str) -> tuple[list[str], dict[str, str]]:
    args = [sys.executable, "-m", "bench_jobs", "worker", "--queue", "default", *extra]
    return args, worker_env(env.folder, BENCH_JOBS_BENCH=str(env.bench_root))


def rq_worker(env: Environment, *extra: str) -> tuple[list[str], dict[str, str]]:
    args = [sys.executable, "-m", "rq.cli", "worker", "--url", env.redis.url, "--serializer", "json"]
    return [*args, "--path", str(env.apps_dir), *extra, RQ_QUEUE], worker_env(env.folder)


def start(env: Environment, name: str, command: tuple[list[str], dict[str, str]]) -> subprocess.Popen[bytes]:
    args, penv = command
    return env.children.start(args, env=penv, cwd=env.folder, log=env.folder / f"{name}.log")


def wait_burst(env: Environment, name: str, command: tuple[list[str], dict[str, str]]) -> None:
    process = start(env, name, command)
    try:
        code = process.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{name} did not finish within {WAIT_S:.0f} s; see {env.folder}/{name}.log") from None
    if code != 0:
        raise HarnessError(f"{name} exited with {code}; see {env.folder}/{name}.log")
    env.children.stop(process)


def small_positions(env: Environment, big: list[str], small: list[str]) -> tuple[list[int], float]:
    """1-based positions of the small site's jobs in the order all jobs ended, and their mean wait (s)."""
    conn = env.redis.client()
    with conn.pipeline(transaction=False) as pipe:
        for job_id in big + small:
            pipe.hmget(Job.key_for(job_id), "ended_at", "enqueued_at")
        replies = pipe.execute()
    ended = [(r[0].decode(), job_id) for r, job_id in zip(replies, big + small, strict=True) if r[0]]
    if len(ended) != len(big) + len(small):
        raise HarnessError(f"only {len(ended)} of {len(big) + len(small)} jobs ended")
    order = [job_id for _, job_id in sorted(ended)]
    positions = sorted(order.index(job_id) + 1 for job_id in small)
    jobs = Job.fetch_many(small, connection=conn, serializer=JSONSerializer)
    waits = [
        (job.ended_at - job.enqueued_at).total_seconds() for job in jobs if job and job.ended_at and job.enqueued_at
    ]
    return positions, statistics.mean(waits)


def fairness_rows(env: Environment, n_big: int, n_small: int) -> list[Row]:
    conn = env.redis.client()
    conn.flushdb()
    big = [bench_jobs.enqueue(NOOP_METHOD, site=SITE, x=i).id for i in range(n_big)]
    small = [bench_jobs.enqueue(NOOP_METHOD, site=SMALL_SITE, x=i).id for i in range(n_small)]
    wait_burst(env, "bench-fair", bench_worker(env, "--burst"))
    bench_pos, bench_wait = small_positions(env, big, small)

    conn.flushdb()
    plain = Queue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
    rq_big = [plain.enqueue(NOOP_METHOD, x=i).id for i in range(n_big)]
    rq_small = [plain.enqueue(NOOP_METHOD, x=-i).id for i in range(n_small)]
    wait_burst(env, "rq-fair", rq_worker(env, "--burst"))
    rq_pos, rq_wait = small_positions(env, rq_big, rq_small)
    print(f"small site's positions: bench-jobs {bench_pos}, plain RQ {rq_pos}", file=sys.stderr)
    return [
        Row(f"fairness: {n_small} jobs queued after {n_big:,} of another site, last one's position",
            bench_pos[-1], rq_pos[-1], "", higher_is_better=False),
        Row("  their mean wait from enqueue to end", bench_wait, rq_wait, "s", higher_is_better=False),
    ]  # fmt: skip


def pick_up_s(env: Environment, enqueue_one: object, rounds: int) -> list[float]:
    """Enqueue-to-start times of `rounds` jobs queued one at a time onto an idle worker."""
    latencies = []
    for _ in range(rounds):
        time.sleep(IDLE_BEFORE_S)
        job: Job = enqueue_one()  # type: ignore[operator]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job.refresh()
            if job.started_at is not None:
                break
            time.sleep(0.005)
        if job.started_at is None or job.enqueued_at is None:
            raise HarnessError(f"job {job.id} did not start within 30 s")
        latencies.append((job.started_at - job.enqueued_at).total_seconds())
    return latencies


def commands_per_s(env: Environment) -> float:
    conn = env.redis.client()
    before = int(conn.info("stats")["total_commands_processed"])
    time.sleep(IDLE_WINDOW_S)
    return (int(conn.info("stats")["total_commands_processed"]) - before - 1) / IDLE_WINDOW_S


def p95(values: Sequence[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def idle_rows(env: Environment, rounds: int) -> list[Row]:
    conn = env.redis.client()
    conn.flushdb()
    results: dict[str, tuple[list[float], float]] = {}
    plain = Queue(RQ_QUEUE, connection=conn, serializer=JSONSerializer)
    contenders = {
        "bench-jobs": (bench_worker(env), lambda: bench_jobs.enqueue(NOOP_METHOD, site=SITE)),
        "rq": (rq_worker(env), lambda: plain.enqueue(NOOP_METHOD)),
    }
    for name, (command, enqueue_one) in contenders.items():
        process = start(env, f"{name}-idle", command)
        try:
            time.sleep(3.0)  # started, preloaded, idle
            rate = commands_per_s(env)
            results[name] = (pick_up_s(env, enqueue_one, rounds), rate)
        finally:
            env.children.stop(process)
    bench, rq = results["bench-jobs"], results["rq"]
    return [
        Row(f"idle pick-up, enqueue to start, p50 of {rounds}", statistics.median(bench[0]) * 1000,
            statistics.median(rq[0]) * 1000, "ms", higher_is_better=False),
        Row(f"idle pick-up, p95 of {rounds}", p95(bench[0]) * 1000, p95(rq[0]) * 1000, "ms", higher_is_better=False),
        Row("idle worker, Redis commands/s", bench[1], rq[1], "cmd/s", higher_is_better=False),
    ]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 + 10 jobs and 10 pick-ups")
    parser.add_argument("--redis-server", help="the redis-server binary (default: on PATH)")
    args = parser.parse_args(argv)
    n_big, rounds = (300, 10) if args.quick else (3000, 30)
    try:
        binary = find_redis_server(args.redis_server)
        with benchmark_environment(binary) as env:
            add_small_site(env)
            use_bench_in_this_process(env)
            print("measuring idle pick-up ...", file=sys.stderr)
            rows = idle_rows(env, rounds)
            print("measuring fairness ...", file=sys.stderr)
            rows += fairness_rows(env, n_big, 10)
            print(render(rows, f"{n_big:,} + 10 jobs, one worker per contender; {Path(__file__).name}"))
    except HarnessError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
