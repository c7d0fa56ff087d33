"""RQ's scheduler of delayed jobs and retry delays, as a bench's worker forks it: it moves due jobs with the
workers' atomic script and waits out a Redis outage instead of dying with it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from rq import Queue
from rq.scheduler import RQScheduler

from .due import move_due_jobs
from .lifetime import die_with_parent
from .outage import REDIS_DOWN, log

STOP_CHECK_S = 0.2


class BenchScheduler(RQScheduler):
    """RQ's scheduler of delayed jobs and retry delays (a process the worker forks), which waits out a Redis
    outage instead of dying with it: otherwise retries would wait for the worker's next maintenance."""

    _parent_pid = 0

    def enqueue_scheduled_jobs(self) -> None:
        """RQ's move of due retries and delayed jobs for the queues whose lock it holds, by the atomic script
        workers share (jobs/due.py): RQ's own move could push a job twice."""
        move_due_jobs(self.connection, [Queue(name, connection=self.connection) for name in self._acquired_locks])

    def acquire_locks(self, auto_start: bool = False) -> dict[str, int]:
        """RQ's, taking no lock while Redis is away or full: the worker's dequeue moves due jobs meanwhile, and
        its maintenance tries the locks again."""
        try:
            return super().acquire_locks(auto_start)  # type: ignore[no-untyped-call,no-any-return]
        except REDIS_DOWN as exc:
            log.warning("RQ scheduler: no lock taken (%s); due jobs move with the workers' dequeue", exc)
            return {}

    def start(self) -> Any:
        self._parent_pid = os.getpid()
        return super().start()  # type: ignore[no-untyped-call]

    def work(self) -> None:
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        if self._parent_pid:  # SIGTERM when the worker dies: the loop below stops and releases RQ's locks
            die_with_parent(self._parent_pid, signal.SIGTERM)
        self.register_birth()  # type: ignore[no-untyped-call]
        down = False
        while not self._stop_requested:
            try:
                if self.should_reacquire_locks:
                    self.acquire_locks()  # type: ignore[no-untyped-call]
                self.heartbeat()  # type: ignore[no-untyped-call]  # re-takes a lock that expired meanwhile
                self.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
                if down:
                    log.info("RQ scheduler: Redis answers again")
                down = False
            except REDIS_DOWN as exc:
                if not down:
                    log.warning("RQ scheduler: Redis does not answer (%s); retrying every %s s", exc, self.interval)
                down = True
            self._sleep_unless_stopped(self.interval)
        with contextlib.suppress(*REDIS_DOWN):
            self.stop()  # type: ignore[no-untyped-call]

    def _sleep_unless_stopped(self, seconds: float) -> None:
        """Sleep between turns, but notice a stop within STOP_CHECK_S (the worker's stop waits for this one)."""
        deadline = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < deadline:
            time.sleep(min(STOP_CHECK_S, max(0.0, deadline - time.monotonic())))
