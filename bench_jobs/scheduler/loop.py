"""`bench-jobs schedule`: tick on wall-clock boundaries while holding the leader lease, stand by otherwise,
ride out Redis outages, and stop cleanly on SIGTERM/SIGINT. The clock is Redis's (TIME, read once a tick and
passed down): a process whose own clock runs ahead would fire slots early, skip slots at each hand-over, and
prune the other processes' heartbeats as silent. Only the sleep until the next boundary runs on the local
clock, corrected by the offset measured at the last tick."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from datetime import datetime, timedelta
from types import FrameType

import redis

from ..core.bench import Bench
from ..core.config import load_bench_settings, load_site_settings
from ..core.connection import (
    auth_failure,
    connect,
    connect_checked,
    describe_connection_error,
    is_auth_failure,
    shown_target,
)
from ..core.cron import next_slot, zone_info
from ..core.keys import Keys
from ..errors import BenchJobsError
from ..jobs.history import iso
from .clock import RedisClock, read_clock
from .leader import Heartbeat, Lease, drop_heartbeat, write_heartbeat
from .tick import Decision, Scheduler, TickResult

log = logging.getLogger("bench_jobs.scheduler.tick")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 10.0  # a restarted Redis is noticed within 10 s; a connect attempt costs little
LEASE_RETRY_MARGIN_S = 0.02
# A wake-up timed by the local clock may come a hair before the boundary by Redis's (the offset is measured
# to within a round trip): up to this early, the tick waits for the boundary, or its slot would be missed.
EARLY_WAKE_MAX_S = 0.25
# Waited out with backoff. A ResponseError is typically READONLY from a replica promoted away under us
# (Sentinel or DNS failover): the connections are dropped, so the retry reaches the new primary.
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)


def next_boundary(now_s: float, tick_interval_s: int) -> float:
    """The first wall-clock multiple of the tick interval strictly after `now_s` (epoch seconds)."""
    return (math.floor(now_s / tick_interval_s) + 1) * tick_interval_s


def run_once(bench: Bench) -> TickResult:
    """One tick at the current time, without the lease (the claims keep concurrent runs exactly-once)."""
    settings = load_bench_settings(bench)
    conn = connect_checked(settings)
    clock = read_clock(conn)
    result = Scheduler(bench, conn).tick(clock.now)
    at = clock.now + timedelta(seconds=result.duration_s)
    write_heartbeat(conn, Keys(settings.bench_id), _beat(at, clock, settings.tick_interval_s, True, 0.0, result))
    return result


def _beat(
    at: datetime, clock: RedisClock, tick_interval_s: int, leader: bool, lag_s: float | None, result: TickResult | None
) -> Heartbeat:
    """This process's heartbeat at Redis time `at`."""
    return Heartbeat(
        at=iso(at),
        host=socket.gethostname(),
        pid=os.getpid(),
        leader=leader,
        tick_interval_s=tick_interval_s,
        tick_lag_s=None if lag_s is None else round(lag_s, 3),
        tick_duration_s=round(result.duration_s, 3) if result else None,
        fired=len(result.fired) if result else None,
        skipped=len(result.skipped) if result else None,
        clock_offset_s=clock.offset_s,
    )


def first_seen_line(seen: Decision, now: datetime, zone_name: str) -> str:
    """What a job seen for the first time does: it waits for its next slot (DESIGN 5), said in the site's zone."""
    zone = zone_info(zone_name)
    first = next_slot(seen.job.cron, now, zone_name).astimezone(zone)
    return (
        f"first seen: {seen.site}: {seen.job.method} will first run at {first:%Y-%m-%d %H:%M %Z} "
        f"(the slot when it was first seen, {seen.slot.astimezone(zone):%H:%M}, is recorded, not run)"
    )


class SchedulerLoop:
    """The daemon: at every boundary, hold or try the lease; the leader ticks and every process beats."""

    def __init__(self, bench: Bench, stop: threading.Event | None = None) -> None:
        self.bench = bench
        self.stop = stop or threading.Event()
        self.settings = load_bench_settings(bench)
        self.conn = connect(self.settings)
        self.keys = Keys(self.settings.bench_id)
        self.scheduler: Scheduler | None = None
        self.lease = Lease(self.conn, self.keys, self.settings.tick_interval_s)
        self.leading = False
        self._problems: set[str] = set()
        self._failure: str | None = None  # the last tick's unexpected error, logged with its traceback once
        self._answered = False  # whether Redis ever took this process's credentials
        self._paused = False  # whether the last tick found the bench paused, to log each change once
        self.clock_offset_s = 0.0  # how far this process's clock is ahead of Redis's, as of the last beat
        self.boundary_s = 0.0  # the boundary (Redis's epoch s) the loop last slept towards

    def run(self) -> int:
        """Loop until stopped; returns the exit code (0). Redis errors are waited out, except credentials refused
        before Redis ever took them (RedisUnavailable, exit 3); any other error fails that tick only (logged,
        with its traceback the first time) and the next boundary ticks again."""
        backoff_s = 0.0
        try:
            while not self.stop.is_set():
                try:
                    self.beat()
                    self._answered = True
                    if backoff_s:
                        log.info("Redis answers again; scheduler resumes")
                    backoff_s = 0.0
                    self._failure = None
                except REDIS_ERRORS as exc:
                    # Refused credentials are waited out only once they have worked: a wrong password in the
                    # config never heals, while a Redis whose password is being rotated may.
                    if is_auth_failure(exc) and not self._answered:
                        raise auth_failure(exc, shown_target(self.settings)) from exc
                    if not backoff_s:
                        self._log_redis_error(exc)
                    if isinstance(exc, redis.ResponseError):
                        self.conn.connection_pool.disconnect()
                    self.leading = False
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S) if backoff_s else BACKOFF_FIRST_S
                    self.stop.wait(backoff_s)
                    continue
                except BenchJobsError as exc:
                    log.error("%s; trying again next tick", exc.message)
                except Exception as exc:
                    self._log_failure(exc)
                self.boundary_s = next_boundary(time.time() - self.clock_offset_s, self.settings.tick_interval_s)
                wake = self.boundary_s + self.clock_offset_s
                if not self.leading:
                    wake = min(wake, time.time() + self.lease.free_in_s + LEASE_RETRY_MARGIN_S)
                self._sleep_until(wake)
        finally:
            self._shut_down()
        return 0

    def _log_redis_error(self, exc: redis.RedisError) -> None:
        url = shown_target(self.settings)
        if is_auth_failure(exc):
            log.error("Redis at %s refused the credentials: authentication failed (%s); retrying", url, exc)
        elif isinstance(exc, redis.ResponseError):
            log.error("Redis at %s refused a command (%s); reconnecting and retrying", url, exc)
        else:
            log.error("Redis at %s does not answer (%s); retrying", url, describe_connection_error(exc))

    def _log_failure(self, exc: Exception) -> None:
        """A failed tick, with its traceback unless the previous tick failed the same way."""
        failure = f"{type(exc).__name__}: {exc}"
        if failure != self._failure:
            log.exception("tick failed (%s); trying again next tick", failure)
        else:
            log.error("tick failed again (%s); trying again next tick", failure)
        self._failure = failure

    def beat(self) -> None:
        """Read Redis's clock, hold or try the lease, tick when leading, then write the heartbeat."""
        self.settings = load_bench_settings(self.bench)
        clock = read_clock(self.conn)
        self.clock_offset_s = clock.offset_s
        started_s = time.monotonic()
        tick_s = self.settings.tick_interval_s
        self.lease.tick_interval_s = tick_s
        was_leading, self.leading = self.leading, self.lease.hold()
        if self.leading != was_leading:
            log.info("%s (%s)", "leading: this process ticks" if self.leading else "standing by", self.lease.token)
        result = None
        lag_s = None
        if self.leading:
            early_s = self.boundary_s - (clock.now.timestamp() + time.monotonic() - started_s)
            if 0 < early_s <= EARLY_WAKE_MAX_S:
                time.sleep(early_s)
            now = clock.now + timedelta(seconds=time.monotonic() - started_s)
            lag_s = now.timestamp() % tick_s  # how long after the latest boundary this tick started
            if self.scheduler is None:
                self.scheduler = Scheduler(self.bench, self.conn)
            result = self.scheduler.tick(now)
            self._log(result)
            self.leading = self.lease.hold()
        at = clock.now + timedelta(seconds=time.monotonic() - started_s)
        write_heartbeat(self.conn, self.keys, _beat(at, clock, tick_s, self.leading, lag_s, result))

    def _log(self, result: TickResult) -> None:
        if result.paused != self._paused:
            self._paused = result.paused
            if result.paused:
                log.warning("paused (pause_scheduler): ticks fire nothing until `bench-jobs scheduler resume`")
            else:
                log.info("resumed: pause_scheduler is off")
        if result.fired or result.skipped:
            log.info(
                "tick %s: %d fired, %d skipped, %.3f s",
                iso(result.now),
                len(result.fired),
                len(result.skipped),
                result.duration_s,
            )
        for seen in result.having("first_seen"):
            log.info("%s", first_seen_line(seen, result.now, load_site_settings(self.bench, seen.site).timezone))
        new = set(result.problems) - self._problems
        for problem in sorted(new):
            log.warning("%s", problem)
        self._problems = set(result.problems)

    def _sleep_until(self, wake_s: float) -> None:
        """Sleep until the wall clock reaches `wake_s` (epoch seconds) or stop is set."""
        while not self.stop.is_set():
            remaining = wake_s - time.time()
            if remaining <= 0:
                return
            self.stop.wait(remaining)

    def _shut_down(self) -> None:
        """Release the lease (a standby takes over at its next try) and drop this process's heartbeat."""
        try:
            if self.leading:
                self.lease.release()
            drop_heartbeat(self.conn, self.keys)
        except redis.RedisError:
            pass
        log.info("scheduler stopped")


def run_scheduler(bench: Bench) -> int:
    """Run the scheduler daemon in this process until SIGTERM or SIGINT; returns the exit code."""
    loop = SchedulerLoop(bench)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received %s; stopping after the current tick", signal.Signals(signum).name)
        loop.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("scheduler started: tick every %d s", loop.settings.tick_interval_s)
    return loop.run()
