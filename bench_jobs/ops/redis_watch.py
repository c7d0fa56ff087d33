"""`start` watches the redis-server it started, as a process manager does: it reaps it the moment it dies,
says so, and starts it again on the same address with the same append-only file; after too many deaths in a
short window it gives up, and `start` stops everything and exits 1."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from ..core.bench import Bench
from ..errors import BenchJobsError
from .local_redis import LocalRedis, start_local_redis

MAX_RESTARTS = 3  # restarts allowed within RESTART_WINDOW_S; one death more and `start` stops
RESTART_WINDOW_S = 60.0


class RedisWatch:
    """A thread that waits on the local redis-server (reaping it, so no zombie is left) and restarts it.

    `say` prints a line under the redis prefix; `give_up` is called once, with the reason, when a restart
    fails or Redis died more than MAX_RESTARTS times within RESTART_WINDOW_S."""

    def __init__(
        self,
        bench: Bench,
        server: LocalRedis,
        say: Callable[[str], None],
        give_up: Callable[[str], None],
        describe_exit: Callable[[int], str],
    ) -> None:
        self.bench = bench
        self.server = server
        self._say = say
        self._give_up = give_up
        self._describe_exit = describe_exit
        self._restarts: deque[float] = deque()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._watch, name="redis-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        """Stop watching, then stop the current redis-server; returns its exit code."""
        with self._lock:
            self._stopping = True
            code = self.server.stop()
        self._thread.join(timeout=5)
        return code

    def _watch(self) -> None:
        while True:
            returncode = self.server.process.wait()
            with self._lock:
                if self._stopping:
                    return
                reason = self._restart(returncode)
            if reason is not None:
                self._give_up(reason)
                return

    def _restart(self, returncode: int) -> str | None:
        """Start Redis again and say so; the reason to give up instead, or None once it answers again."""
        died = f"redis-server (pid={self.server.process.pid}) {self._describe_exit(returncode)}"
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS:
            return f"{died}, the {MAX_RESTARTS + 1}th time within {RESTART_WINDOW_S:.0f} s: giving up"
        self._restarts.append(now)
        self._say(f"{died}: restarting it ({len(self._restarts)} of {MAX_RESTARTS} within {RESTART_WINDOW_S:.0f} s)")
        try:
            self.server = start_local_redis(self.bench, self.server.url, self.server.address)
        except BenchJobsError as exc:
            return f"{died}, and it did not start again: {exc.message}"
        except OSError as exc:
            return f"{died}, and it did not start again: {exc}"
        self._say(f"redis-server restarted (pid={self.server.process.pid}, log {self.server.log_path})")
        return None
