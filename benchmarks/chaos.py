"""Chaos benchmark: jobs flow through four kinds of worker while SIGKILLs hit them; then every job is counted.

    python benchmarks/chaos.py                     # 20,000 jobs, 5 minutes of kills, then recovery
    python benchmarks/chaos.py --jobs 2000 --duration 60 --kill-every 2
    python benchmarks/chaos.py --failover --jobs 600 --kills 2   # SIGKILL a Sentinel-managed master (chaos_failover.py)

Workers (each restarted at once after a kill, as a supervisor would): a multi-queue `worker` (every queue),
`worker --queue short,default`, a single-queue `worker --queue long`, and `worker --num-workers 2`. A SIGKILL
lands every few seconds on one of them, alternately on its whole process group and on the worker parent only.
Jobs: quick sleeps, some raising, some with `retry=2` failing their first attempt. Each job counts its starts
and completions in Redis. After the kills stop, the workers recover what the dead left behind; then every
job is classified and the run says whether nothing was lost, nothing completed twice and no process was
left behind. Exit 0 when all three hold, 1 otherwise, 2 when it cannot run.

The redis-server is this run's own, on a unix socket in a temporary folder (never the user's Redis).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    FOREIGN_ENV_PREFIXES,
    SITE,
    Environment,
    HarnessError,
    Interrupted,
    benchmark_environment,
    find_redis_server,
    worker_env,
)

EXIT_OK, EXIT_FAILED = 0, 1
CHAOS_APP = "chaos_app"
METHOD = f"{CHAOS_APP}.tasks.work"
QUEUES = ("short", "default", "long")
SLOTS = {
    "multi-queue": ("worker",),
    "two queues": ("worker", "--queue", "short,default"),
    "single queue": ("worker", "--queue", "long"),
    "pool of 2": ("worker", "--num-workers", "2"),
}
SUCCESSFUL = b"1"  # rq.results.Result.Type.SUCCESSFUL in a results stream entry
LEFTOVER_CHECK_AFTER_S = 3.0  # a killed worker's children must be gone this long after the kill
TASKS = '''"""Jobs of the chaos benchmark: each counts its starts and its completions in Redis."""

import os
import time

import redis

_conn = None


def _redis():
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(os.environ["CHAOS_REDIS_URL"])
    return _conn


def work(n, kind, sleep_ms):
    attempt = _redis().hincrby("chaos:starts", n, 1)
    time.sleep(sleep_ms / 1000)
    if kind == "raise":
        raise ValueError(f"job {n} raises by design")
    if kind == "flaky" and attempt == 1:
        raise RuntimeError(f"job {n} fails its first attempt by design")
    _redis().hincrby("chaos:completions", n, 1)
    return n
'''


@dataclass
class Job:
    n: int
    job_id: str
    kind: str  # ok, raise or flaky (retry=2, fails its first attempt)


@dataclass
class Report:
    enqueued: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    completed_once: int = 0
    completed_twice: int = 0
    ended_twice_unrecorded: int = 0
    rerun_after_kill: int = 0
    failed_by_design: int = 0
    failed_by_kill: int = 0
    failed_without_reason: int = 0
    lost: list[str] = field(default_factory=list)
    left_behind: set[int] = field(default_factory=set)
    recovery_s: float = 0.0

    @property
    def holds(self) -> bool:
        return not self.lost and self.completed_twice == 0 and not self.left_behind and not self.failed_without_reason

    def render(self) -> str:
        kills = ", ".join(f"{count} {kind}" for kind, count in sorted(self.kills.items()))
        lines = [
            f"enqueued                       {self.enqueued:>7,}",
            f"SIGKILLs                       {sum(self.kills.values()):>7,}   ({kills})",
            f"completed once                 {self.completed_once:>7,}",
            f"completed twice                {self.completed_twice:>7,}   (recorded finished, then run again)",
            f"ran to its end twice           {self.ended_twice_unrecorded:>7,}   (killed between its end and record)",
            f"re-run after a kill            {self.rerun_after_kill:>7,}",
            f"failed with a reason           {self.failed_by_design + self.failed_by_kill:>7,}"
            f"   ({self.failed_by_design:,} raised by design, {self.failed_by_kill:,} abandoned by a kill)",
            f"failed without a reason        {self.failed_without_reason:>7,}",
            f"lost                           {len(self.lost):>7,}",
            f"processes left behind          {len(self.left_behind):>7,}",
            f"recovery after the last kill   {self.recovery_s:>7.1f} s",
            "",
            f"lost = 0: {yes(not self.lost)}; completed twice = 0: {yes(self.completed_twice == 0)}; "
            f"left behind = 0: {yes(not self.left_behind)}",
        ]
        if self.lost:
            lines.append("lost jobs (first 10): " + "; ".join(self.lost[:10]))
        return "\n".join(lines)


def add_chaos_app(env: Environment) -> None:
    app = env.apps_dir / CHAOS_APP
    app.mkdir(parents=True, exist_ok=True)
    (app / "__init__.py").write_text("")
    (app / "hooks.py").write_text("scheduler_events = {}\n")
    (app / "tasks.py").write_text(TASKS)
    site = env.bench_root / "sites" / SITE / "site_config.toml"
    site.write_text(site.read_text().replace('apps = ["', f'apps = ["{CHAOS_APP}", "'))
    common = env.bench_root / "sites" / "common_site_config.toml"
    # Results kept for the whole run, and retries after 1 s so that recovery is not paced by RQ's defaults.
    common.write_text(common.read_text() + "job_result_ttl = 86400\nretry_intervals = [1, 1]\n")


class Chaos:
    def __init__(self, env: Environment, seed: int) -> None:
        self.env = env
        self.random = random.Random(seed)
        self.run_id = uuid.uuid4().hex
        self.generation = 0
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.markers: dict[str, str] = {}
        self.pending_checks: list[tuple[float, str]] = []
        self.report = Report()

    def start(self, slot: str) -> None:
        self.generation += 1
        marker = f"{self.run_id}:{self.generation}"
        env = worker_env(
            self.env.folder,
            BENCH_JOBS_BENCH=str(self.env.bench_root),
            CHAOS_REDIS_URL=self.env.redis.url,
            CHAOS_RUN=self.run_id,
            CHAOS_SLOT=marker,
        )
        log = self.env.folder / f"worker-{slot.replace(' ', '-')}.log"
        self.workers[slot] = self.env.children.start(
            [sys.executable, "-m", "bench_jobs", *SLOTS[slot]], env=env, cwd=self.env.bench_root, log=log
        )
        self.markers[slot] = marker

    def kill(self, slot: str, whole_group: bool) -> None:
        process = self.workers[slot]
        with contextlib.suppress(ProcessLookupError):
            if whole_group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self.env.children.processes.remove(process)
        self.report.kills["whole group" if whole_group else "parent only"] += 1
        self.pending_checks.append((time.monotonic() + LEFTOVER_CHECK_AFTER_S, self.markers[slot]))
        self.start(slot)

    def check_leftovers(self, now: float, force: bool = False) -> None:
        due = [marker for at, marker in self.pending_checks if force or at <= now]
        self.pending_checks = [(at, marker) for at, marker in self.pending_checks if not (force or at <= now)]
        for marker in due:
            self.report.left_behind |= processes_marked("CHAOS_SLOT", marker)

    def run(self, jobs: int, duration_s: float, kill_every_s: float, recovery_timeout_s: float) -> Report:
        for slot in SLOTS:
            self.start(slot)
        plan = [Job(n, "", self.kind()) for n in range(jobs)]
        started = time.monotonic()
        next_kill = started + self.random.uniform(0.5, 1.5) * kill_every_s
        whole_group = True
        sent = 0
        while True:
            now = time.monotonic()
            elapsed = now - started
            due = jobs if elapsed >= duration_s * 0.9 else int(jobs * elapsed / (duration_s * 0.9))
            for job in plan[sent:due]:
                job.job_id = self.enqueue(job)
            sent = max(sent, due)
            if elapsed >= duration_s:
                break
            if now >= next_kill:
                self.kill(self.random.choice(list(SLOTS)), whole_group)
                whole_group = not whole_group
                next_kill = now + self.random.uniform(0.5, 1.5) * kill_every_s
                progress(f"{elapsed:5.0f} s: {sent:,} jobs enqueued, {sum(self.report.kills.values())} SIGKILLs")
            self.check_leftovers(now)
            time.sleep(0.05)
        self.report.enqueued = sent
        last_kill = time.monotonic()
        self.wait_for_recovery(plan, recovery_timeout_s)
        self.report.recovery_s = time.monotonic() - last_kill
        self.check_leftovers(time.monotonic(), force=True)
        for process in list(self.workers.values()):
            self.env.children.stop(process)  # SIGTERM: a warm shutdown
        time.sleep(1.0)
        self.report.left_behind |= processes_marked("CHAOS_RUN", self.run_id)
        self.classify(plan)
        return self.report

    def kind(self) -> str:
        roll = self.random.random()
        return "raise" if roll < 0.1 else "flaky" if roll < 0.2 else "ok"

    def enqueue(self, job: Job) -> str:
        import bench_jobs

        queued = bench_jobs.enqueue(
            METHOD,
            queue=self.random.choice(QUEUES),
            retry=2 if job.kind == "flaky" else 0,
            site=SITE,
            n=job.n,
            kind=job.kind,
            sleep_ms=self.random.randint(0, 30),
        )
        assert queued is not None
        return str(queued.id)

    def statuses(self, plan: Sequence[Job]) -> list[bytes | None]:
        client = self.env.redis.client()
        with client.pipeline(transaction=False) as pipe:
            for job in plan:
                pipe.hget(f"rq:job:{job.job_id}", "status")
            return list(pipe.execute())

    def successes(self, plan: Sequence[Job]) -> list[int]:
        """How many times RQ recorded each job as finished (its results stream keeps every outcome)."""
        client = self.env.redis.client()
        with client.pipeline(transaction=False) as pipe:
            for job in plan:
                pipe.xrange(f"rq:results:{job.job_id}")
            streams = pipe.execute()
        return [sum(fields.get(b"type") == SUCCESSFUL for _, fields in entries) for entries in streams]

    def wait_for_recovery(self, plan: Sequence[Job], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            open_jobs = sum(status not in (b"finished", b"failed") for status in self.statuses(plan))
            if open_jobs == 0:
                return
            progress(f"recovery: {open_jobs:,} jobs not yet finished or failed")
            time.sleep(2.0)

    def classify(self, plan: Sequence[Job]) -> None:
        client = self.env.redis.client()
        starts = {int(k): int(v) for k, v in client.hgetall("chaos:starts").items()}
        completions = {int(k): int(v) for k, v in client.hgetall("chaos:completions").items()}
        statuses = self.statuses(plan)
        recorded = self.successes(plan)
        for job, status, successes in zip(plan, statuses, recorded, strict=True):
            done = completions.get(job.n, 0)
            expected_starts = 2 if job.kind == "flaky" else 1
            if starts.get(job.n, 0) > expected_starts:
                self.report.rerun_after_kill += 1
            if successes >= 2:
                self.report.completed_twice += 1
            elif done >= 2:
                self.report.ended_twice_unrecorded += 1
            if status == b"finished" and job.kind != "raise" and done >= 1:
                self.report.completed_once += successes == 1
            elif status == b"failed":
                reason = failure_reason(client, job.job_id)
                if not reason:
                    self.report.failed_without_reason += 1
                elif job.kind == "raise" and "raises by design" in reason:
                    self.report.failed_by_design += 1
                else:
                    self.report.failed_by_kill += 1
            else:
                where = status.decode() if status else "no job hash"
                self.report.lost.append(f"{job.job_id} ({job.kind}): {where}, {done} completion(s)")


def yes(holds: bool) -> str:
    return "yes" if holds else "NO"


def failure_reason(client: Any, job_id: str) -> str:
    """The exception text RQ recorded for the job's last result (what show-failed-jobs shows)."""
    entries = client.xrevrange(f"rq:results:{job_id}", count=1)
    if not entries:
        return ""
    packed = entries[0][1].get(b"exc_string")
    return zlib.decompress(base64.b64decode(packed)).decode(errors="replace") if packed else ""


def processes_marked(variable: str, value: str) -> set[int]:
    """Live (not zombie) processes whose environment holds variable=value."""
    needle = f"{variable}={value}".encode()
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.add(int(entry.name))
    return found


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_chaos(
    jobs: int, duration_s: float, kill_every_s: float, recovery_timeout_s: float, seed: int = 1, keep: bool = False
) -> Report:
    """One chaos run in a temporary bench with its own redis-server; returns the report."""
    binary = find_redis_server()
    with benchmark_environment(binary, keep_folder=keep) as env:
        add_chaos_app(env)
        for key in [key for key in os.environ if key.startswith(FOREIGN_ENV_PREFIXES)]:
            del os.environ[key]
        os.environ["BENCH_JOBS_BENCH"] = str(env.bench_root)
        return Chaos(env, seed).run(jobs, duration_s, kill_every_s, recovery_timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs to enqueue over the kill phase")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of the kill phase")
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between SIGKILLs")
    parser.add_argument("--recovery-timeout", type=float, default=300.0, help="seconds to wait for recovery")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (worker logs)")
    parser.add_argument("--failover", action="store_true", help="SIGKILL a Sentinel-managed master instead")
    parser.add_argument("--workers", type=int, default=2, help="--failover: worker processes")
    parser.add_argument("--kills", type=int, default=1, help="--failover: master SIGKILLs per run")
    args = parser.parse_args(argv)
    if args.failover:
        from chaos_failover import run_failover

        try:
            return run_failover(args.jobs, args.workers, args.kills, args.keep)
        except HarnessError as exc:
            print(f"Error: {exc.message}", file=sys.stderr)
            return exc.exit_code
    try:
        report = run_chaos(args.jobs, args.duration, args.kill_every, args.recovery_timeout, args.seed, args.keep)
    except HarnessError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, Interrupted):
        print("Interrupted: stopped the workers and redis-server, removed the temporary folder.", file=sys.stderr)
        return EXIT_FAILED
    print(report.render())
    return EXIT_OK if report.holds else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
