"""CLI latency on a small bench: `doctor` and `show-queue` next to `rq info` on the same Redis.

    python benchmarks/cli_latency.py                 # 2 sites, 20 runs of each command, medians
    python benchmarks/cli_latency.py --runs 40 --importtime
    git archive main bench_jobs | tar -x -C /tmp/base && python benchmarks/cli_latency.py --baseline /tmp/base

Builds a 2-site bench (bench.local and second.local, 5 queued jobs each) on a redis-server of its own (a unix
socket in a temporary folder, like benchmarks/run.py), then runs each command as a fresh process (what an
operator or a monitor pays), with a warm bytecode cache, interleaved run by run so that a machine that slows
down hurts every command alike. Prints each command's median wall time and median CPU time (user + system:
steadier on a shared machine, where waiting for a core is not counted), each as a ratio to `rq info`'s:
bench-jobs over RQ, so at or below 1.00x is as fast as plain RQ or faster. Target: wall ratios <= 1.00x.
`--baseline DIR` also times the bench_jobs package in DIR (an export of an earlier commit) in the same run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness import SITE, Environment, HarnessError, benchmark_environment, find_redis_server, worker_env

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_site_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.jobs import enqueue as jobs
from bench_jobs.jobs import push

SECOND_SITE = "second.local"
JOBS_PER_SITE = 5
TARGET_RATIO = 1.0


def add_site_and_jobs(env: Environment) -> None:
    """A second site, and JOBS_PER_SITE queued no-op jobs on each site, so show-queue has rows to show."""
    folder = env.bench_root / "sites" / SECOND_SITE
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site_config.toml").write_text('apps = ["noop_app"]\ntimezone = "UTC"\nscheduler_enabled = true\n')
    bench = Bench(env.bench_root)
    use_bench(bench)
    pending: list[push.PendingJob] = []
    conn = None
    for site in (SITE, SECOND_SITE):
        settings = load_site_settings(bench, site)
        conn = conn or connect(settings.bench)
        for i in range(JOBS_PER_SITE):
            queue, job = jobs.build_job(conn, settings, "noop_app.tasks.noop", {"x": i}, queue="default")
            pending.append(push.PendingJob(queue, job, False, False))
    assert conn is not None
    push.send(conn, pending)


Row = tuple[str, list[str], dict[str, str]]  # label, command, environment


def commands(env: Environment, child_env: dict[str, str], baseline: Path | None) -> list[Row]:
    """rq info, then doctor and show-queue; with `baseline` (a folder holding another bench_jobs, such as
    an export of an earlier commit), also that version's doctor and show-queue, in the same run."""
    cli = [sys.executable, "-m", "bench_jobs"]
    rows: list[Row] = [
        (
            "rq info --url unix://.../redis.sock",
            [sys.executable, "-m", "rq.cli", "info", "--url", env.redis.url],
            child_env,
        )
    ]
    versions = [("", child_env)]
    if baseline is not None:
        versions.append((" (baseline)", {**child_env, "PYTHONPATH": str(baseline.resolve())}))
    for suffix, version_env in versions:
        rows.append((f"bench-jobs --site {SITE} doctor{suffix}", [*cli, "--site", SITE, "doctor"], version_env))
        rows.append((f"bench-jobs show-queue{suffix}", [*cli, "show-queue"], version_env))
    return rows


def cpu_seconds() -> float:
    """User + system CPU time of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(rows: list[Row], cwd: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Median wall time and median CPU time of each command over `runs` fresh processes, the commands
    interleaved. CPU time is the steadier figure on a shared machine: waiting for a core does not count."""
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    for label, argv, env in rows:  # warms the bytecode cache, and shows a command that fails
        result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
        if result.returncode not in (0, 1):  # doctor exits 1 here: no scheduler or worker runs
            raise HarnessError(f"{label} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    for _ in range(runs):
        for label, argv, env in rows:
            started, started_cpu = time.perf_counter(), cpu_seconds()
            subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=60)
            times[label].append(time.perf_counter() - started)
            cpu[label].append(cpu_seconds() - started_cpu)
    return {label: (statistics.median(times[label]), statistics.median(cpu[label])) for label in times}


def import_times(argv: list[str], env: dict[str, str], cwd: Path, top: int) -> list[tuple[int, str]]:
    """The `top` slowest imports (cumulative microseconds, module) of one run under `-X importtime`."""
    result = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            if not name.startswith(" "):
                rows.append((int(cumulative), name))
    return sorted(rows, reverse=True)[:top]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--importtime", action="store_true", help="Also print each command's slowest imports.")
    parser.add_argument("--baseline", type=Path, help="Also time the bench_jobs package found in this folder.")
    parser.add_argument("--check", action="store_true", help=f"Exit 1 when a ratio is above {TARGET_RATIO:.2f}x.")
    args = parser.parse_args(argv)
    try:
        with benchmark_environment(find_redis_server()) as env:
            add_site_and_jobs(env)
            child_env = worker_env(env.folder, BENCH_JOBS_BENCH=str(env.bench_root))
            rows = commands(env, child_env, args.baseline)
            medians = measure(rows, env.bench_root, args.runs)
            rq_wall, rq_cpu = medians[rows[0][0]]
            print(f"2 sites, {2 * JOBS_PER_SITE} queued jobs; median of {args.runs} fresh processes each\n")
            print(f"{'command':48s} {'wall':>9s} {'vs rq info':>10s} {'CPU':>9s} {'vs rq info':>10s}")
            missed = False
            for label, _, _ in rows:
                wall, cpu = medians[label]
                missed = missed or ("(baseline)" not in label and wall / rq_wall > TARGET_RATIO)
                print(
                    f"{label:48s} {wall * 1000:6.1f} ms {wall / rq_wall:9.2f}x "
                    f"{cpu * 1000:6.1f} ms {cpu / rq_cpu:9.2f}x"
                )
            print(f"\ntarget: each bench-jobs command's wall time at or below {TARGET_RATIO:.2f}x rq info's")
            if args.importtime:
                for label, command, command_env in rows:
                    print(f"\nslowest imports of {label} (cumulative):")
                    for micros, name in import_times(command, command_env, env.bench_root, 12):
                        print(f"  {micros / 1000:6.1f} ms  {name}")
    except HarnessError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
