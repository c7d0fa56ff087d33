"""Chaos benchmark: jobs flow through four kinds of worker while faults hit them; then every job is counted.

    python benchmarks/chaos.py                     # 20,000 jobs, 5 minutes of kills, then recovery
    python benchmarks/chaos.py --jobs 2000 --duration 60 --kill-every 2
    python benchmarks/chaos.py --failover --jobs 600 --kills 2   # SIGKILL a Sentinel-managed master (chaos_failover.py)
    python benchmarks/chaos.py --fault drop --jobs 3000 --duration 60 --kill-every 2

Faults (--fault; one every --kill-every seconds on average): `kill` (SIGKILLs, below); `stall` (DEBUG SLEEP
of 0.5 to 3 s); `full` (maxmemory set to the memory in use under noeviction for 1 to 3 s: writes refused);
`drop` (CLIENT KILL TYPE normal: every client's connection dropped); `skew` (a `schedule` whose clock runs 90 s
ahead, under libfaketime, leading, next to a plain one, both firing a job every 2 s; halfway the skewed leader is
stopped and restarted, so the lead passes to the plain one; the report adds the slots fired twice or never).
Every mode prints lost / ran twice / recorded twice / failed without running / failed as abandoned.

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
import threading
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
    BENCH_ID,
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
FAULTS = ("kill", "stall", "full", "drop", "skew")
TICK_EVERY_S = 2  # the skew mode's cron job: every 2 s (a seconds field)
SKEW = "+90s"
LEAD_WAIT_S = 15.0  # the skewed `schedule` has this long to take the lead before the plain one starts
LIBFAKETIME = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")
LEFTOVER_CHECK_AFTER_S = 3.0  # a killed worker's children must be gone this long after the kill
TASKS = '''"""Jobs of the chaos benchmark: each counts its starts and its completions in Redis, as one field per run
(HSET of a token made before the call: a resent write counts once)."""

import os
import re
import time
import uuid

import redis
from rq import get_current_job

_conn = None


def _redis():
    global _conn
    if _conn is None:
        _conn = redis.Redis.from_url(os.environ["CHAOS_REDIS_URL"])
    return _conn


def _riding_out(step, what):
    for attempt in range(50):  # the faults hit this client too: the job's own Redis calls ride them out
        try:
            return step()
        except redis.RedisError:
            time.sleep(0.1)
    raise RuntimeError(f"could not {what}")


def _count(key, n, token):
    _riding_out(lambda: _redis().hset(key, f"{n}:{token}", 1), f"count {key} for {n}")


def _runs_so_far(n):
    return _riding_out(lambda: sum(1 for _ in _redis().hscan_iter("chaos:starts", match=f"{n}:*")), "read")


def work(n, kind, sleep_ms):
    token = uuid.uuid4().hex
    _count("chaos:starts", n, token)
    time.sleep(sleep_ms / 1000)
    if kind == "raise":
        raise ValueError(f"job {n} raises by design")
    if kind == "flaky" and _runs_so_far(n) == 1:
        raise RuntimeError(f"job {n} fails its first attempt by design")
    _count("chaos:completions", n, token)
    return n


def tick():
    slot = int(re.search(r"(\\d+)$", get_current_job().id).group(1))
    _count("chaos:ticks", slot, uuid.uuid4().hex)
'''


@dataclass
class Job:
    n: int
    job_id: str
    kind: str  # ok, raise or flaky (retry=2, fails its first attempt)


@dataclass
class Report:
    fault: str = "kill"
    enqueued: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    faults: int = 0
    recorded_twice: int = 0
    failed_without_running: int = 0
    worker_exits: int = 0
    ticks_twice: int = 0
    ticks_missed: int = 0
    ticks_fired: int = 0
    completed_once: int = 0
    completed_twice: int = 0
    ended_twice_unrecorded: int = 0
    rerun_after_kill: int = 0
    failed_by_design: int = 0
    failed_by_kill: int = 0
    failed_abandoned: int = 0
    other_reasons: list[str] = field(default_factory=list)
    failed_without_reason: int = 0
    lost: list[str] = field(default_factory=list)
    left_behind: set[int] = field(default_factory=set)
    recovery_s: float = 0.0

    @property
    def ran_twice(self) -> int:
        return self.completed_twice + self.ended_twice_unrecorded

    @property
    def holds(self) -> bool:
        return (
            not self.lost
            and self.completed_twice == 0
            and self.recorded_twice == 0
            and not self.left_behind
            and not self.failed_without_reason
            and (self.fault == "kill" or (self.ran_twice == 0 and self.failed_without_running == 0))
            and self.ticks_twice == 0
            and (self.fault != "skew" or (self.ticks_fired > 0 and self.ticks_missed == 0))
        )

    def render(self) -> str:
        kills = ", ".join(f"{count} {kind}" for kind, count in sorted(self.kills.items()))
        faults = FAULT_NAMES[self.fault]
        lines = [
            f"fault: {self.fault}",
            f"enqueued                       {self.enqueued:>7,}",
            f"{faults:<30} {self.faults:>7,}" + (f"   ({kills})" if self.kills else ""),
            f"completed once                 {self.completed_once:>7,}",
            f"completed twice                {self.completed_twice:>7,}   (recorded finished, then run again)",
            f"ran to its end twice           {self.ended_twice_unrecorded:>7,}   (killed between its end and record)",
            f"re-run after a kill            {self.rerun_after_kill:>7,}",
            f"failed with a reason           {self.failed_by_design + self.failed_by_kill:>7,}"
            f"   ({self.failed_by_design:,} raised by design, {self.failed_by_kill:,} otherwise)",
            f"failed as abandoned            {self.failed_abandoned:>7,}   (RQ's AbandonedJobError: its worker died)",
            f"failed without a reason        {self.failed_without_reason:>7,}",
            f"lost                           {len(self.lost):>7,}",
            f"processes left behind          {len(self.left_behind):>7,}",
            f"workers that exited by error   {self.worker_exits:>7,}   (restarted)",
            f"recovery after the last fault  {self.recovery_s:>7.1f} s",
        ]
        if self.fault == "skew":
            lines += [
                f"2 s slots fired                {self.ticks_fired:>7,}",
                f"slots fired twice              {self.ticks_twice:>7,}",
                f"slots never fired              {self.ticks_missed:>7,}",
            ]
        lines += [
            "",
            f"lost {len(self.lost):,} / ran twice {self.ran_twice:,} / recorded twice {self.recorded_twice:,} / "
            f"failed without running {self.failed_without_running:,}",
            f"lost = 0: {yes(not self.lost)}; completed twice = 0: {yes(self.completed_twice == 0)}; "
            f"left behind = 0: {yes(not self.left_behind)}",
        ]
        if self.lost:
            lines.append("lost jobs (first 10): " + "; ".join(self.lost[:10]))
        if self.other_reasons:
            lines.append("failed otherwise (first 5): " + "; ".join(self.other_reasons[:5]))
        return "\n".join(lines)


FAULT_NAMES = {
    "kill": "SIGKILLs",
    "stall": "stalls (DEBUG SLEEP)",
    "full": "full Redis (maxmemory)",
    "drop": "dropped connections",
    "skew": "leader hand-overs",
}


def add_chaos_app(env: Environment) -> None:
    app = env.apps_dir / CHAOS_APP
    app.mkdir(parents=True, exist_ok=True)
    (app / "__init__.py").write_text("")
    (app / "hooks.py").write_text(
        f'scheduler_events = {{"cron": {{"* * * * * */{TICK_EVERY_S}": ["{CHAOS_APP}.tasks.tick"]}}}}\n'
    )
    (app / "tasks.py").write_text(TASKS)
    site = env.bench_root / "sites" / SITE / "site_config.toml"
    site.write_text(site.read_text().replace('apps = ["', f'apps = ["{CHAOS_APP}", "') + "scheduler_enabled = true\n")
    common = env.bench_root / "sites" / "common_site_config.toml"
    # Results kept for the whole run, and retries after 1 s so that recovery is not paced by RQ's defaults.
    common.write_text(
        common.read_text() + "job_result_ttl = 86400\nretry_intervals = [1, 1]\nscheduler_tick_interval = 1\n"
    )


class Chaos:
    def __init__(self, env: Environment, seed: int, fault: str = "kill") -> None:
        self.env = env
        self.fault = fault
        self.admin = env.redis.client()
        self.fault_threads: list[threading.Thread] = []
        self.random = random.Random(seed)
        self.run_id = uuid.uuid4().hex
        self.generation = 0
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.markers: dict[str, str] = {}
        self.pending_checks: list[tuple[float, str]] = []
        self.schedulers: list[subprocess.Popen[bytes]] = []
        self.report = Report(fault=fault)

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

    def inject(self, whole_group: bool) -> None:
        """One fault of this run's kind."""
        self.report.faults += 1
        if self.fault == "kill":
            self.kill(self.random.choice(list(SLOTS)), whole_group)
        elif self.fault == "drop":
            self.admin.client_kill_filter(_type="normal")  # every client but this one (SKIPME yes)
        elif self.fault == "stall":
            seconds = round(self.random.uniform(0.5, 3.0), 1)
            self.in_background(lambda: self.env.redis.client().execute_command("DEBUG", "SLEEP", seconds))
        elif self.fault == "full":
            held_s = self.random.uniform(1.0, 3.0)
            self.in_background(lambda: self.hold_full(held_s))

    def in_background(self, action: Any) -> None:
        self.fault_threads = [thread for thread in self.fault_threads if thread.is_alive()]
        if self.fault_threads:  # one at a time: the last one has not ended
            self.report.faults -= 1
            return
        thread = threading.Thread(target=action, daemon=True)
        thread.start()
        self.fault_threads.append(thread)

    def hold_full(self, held_s: float) -> None:
        """maxmemory set to the memory in use (noeviction): every write that may grow memory is refused."""
        client = self.env.redis.client()
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]))
        time.sleep(held_s)
        client.config_set("maxmemory", 0)

    def restart_exited(self) -> None:
        """A worker that quit by itself (an error it did not ride out) is counted and restarted."""
        for slot, process in list(self.workers.items()):
            if process.poll() is not None:
                self.report.worker_exits += 1
                self.env.children.processes.remove(process)
                self.start(slot)

    def start_schedulers(self) -> None:
        """A `schedule` whose clock runs SKEW ahead (libfaketime; monotonic time left alone), then a plain one:
        the skewed one leads (ticks) while the plain one follows, ready to take over."""
        log = self.start_scheduler("skewed")
        deadline = time.monotonic() + LEAD_WAIT_S
        while "leading:" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.start_scheduler("plain")

    def start_scheduler(self, name: str) -> Path:
        extra: dict[str, str] = {}
        if name == "skewed":
            library = next((path for path in LIBFAKETIME if Path(path).exists()), None)
            if library is None:
                raise HarnessError("--fault skew needs libfaketime (apt-get install libfaketime).", exit_code=2)
            extra = {"LD_PRELOAD": library, "FAKETIME": SKEW}
        env = worker_env(
            self.env.folder,
            BENCH_JOBS_BENCH=str(self.env.bench_root),
            CHAOS_RUN=self.run_id,
            FAKETIME_DONT_FAKE_MONOTONIC="1",
            **extra,
        )
        log = self.env.folder / f"schedule-{name}-{len(self.schedulers)}.log"
        command = [sys.executable, "-m", "bench_jobs", "schedule"]
        self.schedulers.append(self.env.children.start(command, env=env, cwd=self.env.bench_root, log=log))
        return log

    def hand_over(self) -> None:
        """The skew mode's fault, once, halfway: the skewed leader is stopped (SIGTERM) and started again, so the
        lead passes to the plain one and the slots go on across the two clocks."""
        self.env.children.stop(self.schedulers.pop(0))
        self.report.faults += 1
        self.start_scheduler("skewed")

    def check_leftovers(self, now: float, force: bool = False) -> None:
        due = [marker for at, marker in self.pending_checks if force or at <= now]
        self.pending_checks = [(at, marker) for at, marker in self.pending_checks if not (force or at <= now)]
        for marker in due:
            self.report.left_behind |= processes_marked("CHAOS_SLOT", marker)

    def run(self, jobs: int, duration_s: float, kill_every_s: float, recovery_timeout_s: float) -> Report:
        for slot in SLOTS:
            self.start(slot)
        if self.fault == "skew":
            self.start_schedulers()
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
            if self.fault == "skew" and not self.report.faults and elapsed >= duration_s / 2:
                self.hand_over()
            if now >= next_kill and self.fault != "skew":
                self.inject(whole_group)
                whole_group = not whole_group
                next_kill = now + self.random.uniform(0.5, 1.5) * kill_every_s
                progress(f"{elapsed:5.0f} s: {sent:,} jobs enqueued, {self.report.faults} {FAULT_NAMES[self.fault]}")
            self.restart_exited()
            self.check_leftovers(now)
            time.sleep(0.05)
        self.report.enqueued = sent
        for process in self.schedulers:  # the slots fired so far are judged; a slot fired later is not waited for
            self.env.children.stop(process)
        for thread in self.fault_threads:
            thread.join()
        last_kill = time.monotonic()
        self.wait_for_recovery(plan, recovery_timeout_s)
        self.report.recovery_s = time.monotonic() - last_kill
        self.restart_exited()
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
        """Queue the job under an id of its own; sent again only when it surely did not land (a fault cut the
        enqueue off, or a full Redis refused it): a twin already there means the first send landed."""
        import bench_jobs
        from bench_jobs.core.keys import job_id_for
        from bench_jobs.errors import JobError, MaybeQueued, RedisUnavailable

        given = f"chaos{self.run_id[:8]}n{job.n}"
        job_id = job_id_for(BENCH_ID, SITE, given)
        options: dict[str, Any] = {"queue": self.random.choice(QUEUES), "retry": 2 if job.kind == "flaky" else 0}
        for _ in range(600):
            try:
                bench_jobs.enqueue(
                    METHOD,
                    **options,
                    site=SITE,
                    job_id=given,
                    n=job.n,
                    kind=job.kind,
                    sleep_ms=self.random.randint(0, 30),
                )
                return job_id
            except JobError as exc:
                if "twin" not in str(exc) and not self.admin.exists(f"rq:job:{job_id}"):
                    raise
                return job_id
            except MaybeQueued:
                if self.admin.exists(f"rq:job:{job_id}"):
                    return job_id
            except RedisUnavailable:
                pass
            except Exception as exc:  # a full Redis refuses the write: wait for room
                if "full" not in str(exc).lower() and "OOM" not in str(exc):
                    raise
            time.sleep(0.1)
        raise HarnessError(f"could not enqueue job {job.n} within a minute")

    def statuses(self, plan: Sequence[Job]) -> list[bytes | None]:
        client = self.env.redis.client()
        with client.pipeline(transaction=False) as pipe:
            for job in plan:
                pipe.hget(f"rq:job:{job.job_id}", "status")
            return list(pipe.execute())

    def outcomes(self, plan: Sequence[Job]) -> list[tuple[int, int]]:
        """Per job, how many times RQ recorded it as finished, and how many outcomes it recorded (its results
        stream keeps every one: a job's life records one)."""
        client = self.env.redis.client()
        with client.pipeline(transaction=False) as pipe:
            for job in plan:
                pipe.xrange(f"rq:results:{job.job_id}")
            streams = pipe.execute()
        return [(sum(fields.get(b"type") == SUCCESSFUL for _, fields in entries), len(entries)) for entries in streams]

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
        starts = runs_by_key(client, "chaos:starts")
        completions = runs_by_key(client, "chaos:completions")
        statuses = self.statuses(plan)
        recorded = self.outcomes(plan)
        self.classify_ticks(client)
        for job, status, (successes, outcomes) in zip(plan, statuses, recorded, strict=True):
            done = completions.get(job.n, 0)
            expected_starts = 2 if job.kind == "flaky" else 1
            if starts.get(job.n, 0) > expected_starts:
                self.report.rerun_after_kill += 1
            if outcomes >= 2:
                self.report.recorded_twice += 1
            if status == b"failed" and starts.get(job.n, 0) == 0:
                self.report.failed_without_running += 1
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
                    self.report.failed_abandoned += "AbandonedJobError" in reason
                    self.report.other_reasons.append(f"{job.job_id} ({job.kind}): {last_line(reason)}")
            else:
                where = status.decode() if status else "no job hash"
                self.report.lost.append(f"{job.job_id} ({job.kind}): {where}, {done} completion(s)")

    def classify_ticks(self, client: Any) -> None:
        """The skew mode's slots: each fired once, none twice, none skipped between the first and the last."""
        fired = runs_by_key(client, "chaos:ticks")
        if not fired:
            return
        self.report.ticks_fired = len(fired)
        self.report.ticks_twice = sum(count >= 2 for count in fired.values())
        first, last = min(fired), max(fired)
        self.report.ticks_missed = sum(slot not in fired for slot in range(first, last + 1, TICK_EVERY_S))


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def runs_by_key(client: Any, key: str) -> Counter[int]:
    """How many runs each number counted in `key` (one `<number>:<token>` field per run)."""
    return Counter(int(field.split(b":", 1)[0]) for field in client.hkeys(key))


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
    jobs: int,
    duration_s: float,
    kill_every_s: float,
    recovery_timeout_s: float,
    seed: int = 1,
    keep: bool = False,
    fault: str = "kill",
) -> Report:
    """One chaos run in a temporary bench with its own redis-server; returns the report."""
    binary = find_redis_server()
    redis_args = ("--enable-debug-command", "yes") if fault == "stall" else ()
    with benchmark_environment(binary, keep_folder=keep, redis_args=redis_args) as env:
        add_chaos_app(env)
        for key in [key for key in os.environ if key.startswith(FOREIGN_ENV_PREFIXES)]:
            del os.environ[key]
        os.environ["BENCH_JOBS_BENCH"] = str(env.bench_root)
        return Chaos(env, seed, fault).run(jobs, duration_s, kill_every_s, recovery_timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs to enqueue over the kill phase")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of the kill phase")
    parser.add_argument("--fault", choices=FAULTS, default="kill", help="what hits the run (see above)")
    parser.add_argument("--kill-every", type=float, default=3.0, help="mean seconds between faults")
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
        report = run_chaos(
            args.jobs, args.duration, args.kill_every, args.recovery_timeout, args.seed, args.keep, args.fault
        )
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
