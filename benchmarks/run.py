"""bench-jobs against plain RQ, side by side in one run, on a redis-server and a bench of the run's own.

    python benchmarks/run.py                   # full run, about four minutes on 2 cores
    python benchmarks/run.py --quick           # smaller counts, one round: a smoke test
    python benchmarks/run.py --jobs 10000 --check

Prints one table: the bench-jobs figure, the plain-RQ figure and their ratio (higher = better for
bench-jobs). Exit codes: 0 done, 1 a benchmark failed (or, with --check, a target was missed),
2 cannot run (no redis-server), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
import rq
from harness import (
    BENCH_ID,
    CRUNCH_METHOD,
    CRUNCH_MS,
    FOREIGN_ENV_PREFIXES,
    HEAVY_IMPORT_S,
    HEAVY_METHOD,
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
from rq.serializers import JSONSerializer

import bench_jobs

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
WORKER_TIMEOUT_S = 600.0
WARMUP_JOBS = 50
BENCH_QUEUE = f"{BENCH_ID}:default"  # what bench-jobs makes of its `default` queue
RQ_QUEUE = "plain"
RQ_PICKLE_QUEUE = "plain-pickle"
TARGET_ENQUEUE = 0.9
TARGET_NOOP_WORKER = 3.0  # the default worker: one work-horse runs many jobs
TARGET_HEAVY_WORKER = 9.0
TARGET_CRUNCH_WORKER = 1.0  # jobs that do real work: not slower than RQ
TARGET_NOOP_FORKING = 0.9  # --fork-per-job: a fork per job, as RQ
TARGET_HEAVY_FORKING = 5.0
BENCH, FORKING, RQ = "bench-jobs", "bench-jobs --fork-per-job", "rq"


@dataclass(frozen=True)
class Row:
    """One line of the table. For rates the ratio is bench/RQ; for times (lower is better) it is RQ/bench,
    so a ratio above 1 always favours bench-jobs."""

    label: str
    bench: float
    rq: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.bench / self.rq if self.higher_is_better else self.rq / self.bench

    @property
    def missed(self) -> bool:
        return self.target is not None and self.ratio < self.target


@dataclass(frozen=True)
class Counts:
    enqueue_jobs: int
    worker_jobs: int
    heavy_jobs: int
    rounds: int


def parse_args(argv: Sequence[str] | None) -> tuple[Counts, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Benchmark bench-jobs against plain RQ in the same run (own redis-server, own bench).",
        epilog="Examples: python benchmarks/run.py --quick    python benchmarks/run.py --jobs 10000 --check",
    )
    parser.add_argument("--jobs", type=int, help="jobs per enqueue measurement (default 3000; --quick 500)")
    parser.add_argument("--worker-jobs", type=int, help="no-op jobs per worker run (default 500; --quick 100)")
    parser.add_argument(
        "--heavy-jobs", type=int, help="jobs per slow-import and per CPU-heavy worker run (default 100; --quick 20)"
    )
    parser.add_argument("--rounds", type=int, help="rounds per measurement, the best one counts (default 3)")
    parser.add_argument("--quick", action="store_true", help="small counts and one round: a smoke test")
    parser.add_argument("--check", action="store_true", help="exit 1 when a ratio misses its target")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (bench, worker logs)")
    parser.add_argument("--redis-server", metavar="PATH", help="redis-server binary (default: the one on PATH)")
    args = parser.parse_args(argv)
    defaults = Counts(500, 100, 20, 1) if args.quick else Counts(3000, 500, 100, 3)
    counts = Counts(
        args.jobs or defaults.enqueue_jobs,
        args.worker_jobs or defaults.worker_jobs,
        args.heavy_jobs or defaults.heavy_jobs,
        args.rounds or defaults.rounds,
    )
    if min(counts.enqueue_jobs, counts.worker_jobs, counts.heavy_jobs, counts.rounds) < 1:
        parser.error("counts and rounds must be at least 1")
    return counts, args


class Benchmarks:
    """The measurements, against one environment: bench-jobs in this process and in `bench-jobs worker`
    subprocesses, plain RQ with `Queue.enqueue` and `rq worker`."""

    def __init__(self, env: Environment, counts: Counts) -> None:
        self.env = env
        self.counts = counts
        self.conn = env.redis.client()
        self.rq_json = Queue(RQ_QUEUE, connection=self.conn, serializer=JSONSerializer)
        self.rq_pickle = Queue(RQ_PICKLE_QUEUE, connection=self.conn)
        self.bench_queue = Queue(BENCH_QUEUE, connection=self.conn, serializer=JSONSerializer)

    # Enqueueing, in this process.

    def bench_single(self, n: int, method: str = NOOP_METHOD) -> None:
        for i in range(n):
            bench_jobs.enqueue(method, site=SITE, x=i)

    def bench_transaction(self, n: int, method: str = NOOP_METHOD) -> None:
        with bench_jobs.transaction():
            for i in range(n):
                bench_jobs.enqueue(method, site=SITE, enqueue_after_commit=True, x=i)

    def rq_single(self, n: int) -> None:
        for i in range(n):
            self.rq_json.enqueue(NOOP_METHOD, x=i)

    def rq_pickle_single(self, n: int) -> None:
        for i in range(n):
            self.rq_pickle.enqueue(NOOP_METHOD, x=i)

    def rq_many(self, n: int, method: str = NOOP_METHOD) -> None:
        with self.conn.pipeline() as pipe:
            self.rq_json.enqueue_many([Queue.prepare_data(method, kwargs={"x": i}) for i in range(n)], pipeline=pipe)
            pipe.execute()

    def best_rates(self, contenders: dict[str, tuple[Callable[[int], None], Queue]]) -> dict[str, float]:
        """Jobs/s of each contender, best of the rounds; rounds interleave the contenders so that a
        machine that slows down mid-run hurts all of them alike. Each run starts from an empty Redis."""
        n = self.counts.enqueue_jobs
        for enqueue, _ in contenders.values():
            enqueue(WARMUP_JOBS)
        best = dict.fromkeys(contenders, 0.0)
        for _ in range(self.counts.rounds):
            for name, (enqueue, queue) in contenders.items():
                self.conn.flushdb()
                started = time.perf_counter()
                enqueue(n)
                elapsed = time.perf_counter() - started
                if queue.count != n:
                    raise HarnessError(f"{name}: {queue.count} jobs queued after enqueueing {n}.")
                best[name] = max(best[name], n / elapsed)
        return best

    def enqueue_rows(self) -> list[Row]:
        n, rounds = self.counts.enqueue_jobs, self.counts.rounds
        single = self.best_rates(
            {
                "bench-jobs": (self.bench_single, self.bench_queue),
                "rq": (self.rq_single, self.rq_json),
                "rq-pickle": (self.rq_pickle_single, self.rq_pickle),
            }
        )
        batch = self.best_rates(
            {"bench-jobs": (self.bench_transaction, self.bench_queue), "rq": (self.rq_many, self.rq_json)}
        )
        return [
            Row(f"enqueue, single jobs ({n}, best of {rounds})", single["bench-jobs"], single["rq"], "jobs/s",
                TARGET_ENQUEUE),
            Row("  vs RQ with its default pickle serializer (info)", single["bench-jobs"], single["rq-pickle"],
                "jobs/s"),
            Row(f"enqueue, {n} in one transaction / enqueue_many", batch["bench-jobs"], batch["rq"], "jobs/s",
                TARGET_ENQUEUE),
        ]  # fmt: skip

    # Workers, as subprocesses, timed from start to exit.

    def bench_worker_args(self, fork_per_job: bool = False) -> tuple[list[str], dict[str, str]]:
        args = [sys.executable, "-m", "bench_jobs", "worker", "--burst", "--queue", "default"]
        args += ["--fork-per-job"] if fork_per_job else []
        return args, worker_env(self.env.folder, BENCH_JOBS_BENCH=str(self.env.bench_root))

    def rq_worker_args(self) -> tuple[list[str], dict[str, str]]:
        args = [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", self.env.redis.url]
        args += ["--serializer", "json", "--path", str(self.env.apps_dir), RQ_QUEUE]
        return args, worker_env(self.env.folder)

    def run_worker(
        self, name: str, command: tuple[list[str], dict[str, str]], queue: Queue, n: int, method: str
    ) -> float:
        """Seconds from starting the worker until it exits, after checking it ran all `n` jobs."""
        args, env = command
        log = self.env.folder / f"worker-{name.replace(' ', '')}-{n}-{method.split('.')[-1]}.log"
        log.write_bytes(b"")
        started = time.perf_counter()
        process = self.env.children.start(args, env=env, cwd=self.env.folder, log=log)
        try:
            code = process.wait(WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.env.children.stop(process)
            raise HarnessError(f"{name} worker did not exit within {WORKER_TIMEOUT_S:.0f} s; see {log}.") from None
        elapsed = time.perf_counter() - started
        self.env.children.stop(process)
        finished, failed, left = queue.finished_job_registry.count, queue.failed_job_registry.count, queue.count
        if code != 0 or finished != n or failed or left:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise HarnessError(
                f"{name} worker: exit code {code}, {finished} of {n} jobs finished, {failed} failed, {left} left.\n"
                f"Last lines of its log:\n{tail}"
            )
        return elapsed

    def time_workers(self, n: int, method: str, rounds: int | None = None) -> dict[str, float]:
        """Shortest start-to-exit time of `bench-jobs worker --burst` (many jobs per work-horse), of the same
        with `--fork-per-job`, and of `rq worker --burst` (a fork per job), each serving `n` queued jobs of
        `method`, over the rounds."""
        contenders = {
            BENCH: (self.bench_transaction, self.bench_worker_args(), self.bench_queue),
            FORKING: (self.bench_transaction, self.bench_worker_args(fork_per_job=True), self.bench_queue),
            RQ: (self.rq_many, self.rq_worker_args(), self.rq_json),
        }
        best = dict.fromkeys(contenders, float("inf"))
        for _ in range(rounds or self.counts.rounds):
            for name, (fill, command, queue) in contenders.items():
                self.conn.flushdb()
                if n:
                    fill(n, method)
                best[name] = min(best[name], self.run_worker(name, command, queue, n, method))
        return best

    def worker_rows(self) -> list[Row]:
        n, heavy, rounds = self.counts.worker_jobs, self.counts.heavy_jobs, self.counts.rounds
        self.time_workers(0, NOOP_METHOD, rounds=1)  # untimed: fills both bytecode caches
        noop = self.time_workers(n, NOOP_METHOD)
        slow = self.time_workers(heavy, HEAVY_METHOD)
        crunch = self.time_workers(heavy, CRUNCH_METHOD)
        empty = self.time_workers(0, NOOP_METHOD)
        import_ms = round(HEAVY_IMPORT_S * 1000)
        return [
            Row(f"worker, {n} no-op jobs (best of {rounds})", n / noop[BENCH], n / noop[RQ], "jobs/s",
                TARGET_NOOP_WORKER),
            Row("  the same, --fork-per-job", n / noop[FORKING], n / noop[RQ], "jobs/s", TARGET_NOOP_FORKING),
            Row(f"worker, {heavy} jobs of an app with a {import_ms} ms import", heavy / slow[BENCH],
                heavy / slow[RQ], "jobs/s", TARGET_HEAVY_WORKER),
            Row("  the same, --fork-per-job", heavy / slow[FORKING], heavy / slow[RQ], "jobs/s",
                TARGET_HEAVY_FORKING),
            Row(f"worker, {heavy} jobs of {CRUNCH_MS} ms CPU each", heavy / crunch[BENCH], heavy / crunch[RQ],
                "jobs/s", TARGET_CRUNCH_WORKER),
            Row("  the same, --fork-per-job", heavy / crunch[FORKING], heavy / crunch[RQ], "jobs/s",
                TARGET_CRUNCH_WORKER),
            Row("  worker start-up to exit, empty queue (info)", empty[BENCH], empty[RQ], "s",
                higher_is_better=False),
        ]  # fmt: skip


def _figure(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if unit == "jobs/s" else f"{value:.2f} {unit}"


def render(rows: Sequence[Row], header: str) -> str:
    width = max(len(row.label) for row in rows) + 2
    lines = [header, "", f"{'measurement':<{width}}{'bench-jobs':>14}{'plain RQ':>14}{'ratio':>9}  target"]
    for row in rows:
        target = "" if row.target is None else f">= {row.target:.1f}x " + ("MISSED" if row.missed else "ok")
        lines.append(
            f"{row.label:<{width}}{_figure(row.bench, row.unit):>14}{_figure(row.rq, row.unit):>14}"
            f"{row.ratio:>8.2f}x  {target}".rstrip()
        )
    lines += ["", "ratio: bench-jobs/RQ for rates, RQ/bench-jobs for times; above 1 favours bench-jobs."]
    return "\n".join(lines)


def header(env: Environment) -> str:
    return (
        f"bench-jobs {bench_jobs.__version__} vs RQ {rq.__version__} (redis-py {redis.__version__}), "
        f"redis-server {env.redis.version()} on a unix socket, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs"
    )


def use_bench_in_this_process(env: Environment) -> None:
    """Point bench_jobs (in this process) at the temporary bench only, whatever the caller's environment."""
    for key in [key for key in os.environ if key.startswith(FOREIGN_ENV_PREFIXES)]:
        del os.environ[key]
    os.environ["BENCH_JOBS_BENCH"] = str(env.bench_root)


def fairness_benchmarks(env: Environment, quick: bool) -> list[Row]:
    """bench_fairness.py's rows: idle pick-up latency and Redis commands while idle, then 3,000 jobs of one
    site followed by 10 of another (300 with --quick)."""
    from bench_fairness import add_small_site, fairness_rows, idle_rows

    add_small_site(env)
    return idle_rows(env, 10 if quick else 30) + fairness_rows(env, 300 if quick else 3000, 10)


def main(argv: Sequence[str] | None = None) -> int:
    counts, args = parse_args(argv)
    try:
        binary = find_redis_server(args.redis_server)
        with benchmark_environment(binary, keep_folder=args.keep) as env:
            use_bench_in_this_process(env)
            bench = Benchmarks(env, counts)
            print("measuring enqueue ...", file=sys.stderr)
            rows = bench.enqueue_rows()
            print("measuring workers ...", file=sys.stderr)
            rows += bench.worker_rows()
            print("measuring idle pick-up and fairness (bench_fairness.py) ...", file=sys.stderr)
            rows += fairness_benchmarks(env, quick=args.quick)
            print(render(rows, header(env)))
            if args.keep:
                print(f"Kept {env.folder} (the bench, and the last log of each worker run).", file=sys.stderr)
    except HarnessError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, Interrupted):
        print("Interrupted: stopped the workers and redis-server, removed the temporary folder.", file=sys.stderr)
        return EXIT_INTERRUPTED
    missed = [row for row in rows if row.missed]
    for row in missed:
        print(f"Missed target: {row.label.strip()}: {row.ratio:.2f}x < {row.target:.1f}x", file=sys.stderr)
    return EXIT_FAILED if missed and args.check else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
