"""`bench-jobs start`: a local Redis when none answers, then the scheduler, one worker per queue and (with the
web extra) the dashboard under honcho's manager, with each process's output prefixed and coloured as `bench
start` shows it; when an app's source file changes, the workers and the scheduler are started again on the new
code while the old ones finish their running jobs (a warm stop)."""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import queue
import shlex
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from honcho.manager import Manager
from honcho.printer import Message, Printer
from honcho.process import Process

from ..core.bench import Bench
from ..core.config import BenchSettings, load_bench_settings, redact_url
from ..errors import EXIT_FAILED, EXIT_OK, RedisUnavailable
from .code_watch import CodeWatch, shown
from .local_redis import LocalRedis, local_address, redis_answers, start_local_redis
from .process_configs import (
    BenchProcess,
    bench_command,
    bench_processes,
    dashboard_port,
    dashboard_process,
    free_local_port,
    web_extra_installed,
)
from .redis_watch import RedisWatch

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
OUTPUT_DRAIN_S = 1.0  # after a process exits, how long its last lines may take to arrive
KILL_CHECK_S = 5.0  # as honcho: from this long after a stop began, kill() is called on every turn of the loop
RELOAD = "reload"  # our event on honcho's queue: app files changed (its data: their names)
SHOWN_CHANGES = 3  # changed files named in the reload line; the rest are counted


class WatchedProcess(Process):  # type: ignore[misc]
    """honcho's Process, reporting the exit when the process itself exits rather than when the last holder
    of its output pipe closes it. A worker killed outright leaves RQ's scheduler child (in its process group,
    killed here) and maybe a work-horse (in a group of its own, left to finish its job) holding the pipe,
    and honcho would wait for them and never notice the death."""

    def run(self, events: Any = None, ignore_signals: bool = False) -> None:
        self._events = events
        self._child = self._child_ctor(self.cmd, env=self.env, cwd=self.cwd)
        self._send_message({"pid": self._child.pid}, type="start")
        if ignore_signals:  # as honcho: only the manager decides when this process stops
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
        reader = threading.Thread(target=self._forward_output, daemon=True)
        reader.start()
        returncode = self._child.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._child.pid, signal.SIGKILL)
        reader.join(OUTPUT_DRAIN_S)
        # The pid tells the manager whether the process it replaced on a reload stopped, or the current one.
        self._send_message({"returncode": returncode, "pid": self._child.pid}, type="stop")

    def _forward_output(self) -> None:
        for line in iter(self._child.stdout.readline, b""):
            if not self.quiet:
                self._send_message(line)


class BenchManager(Manager):  # type: ignore[misc]
    """honcho's Manager with the stop a bench needs.

    - First Ctrl-C or SIGTERM: SIGTERM to every process (RQ's warm shutdown: running jobs finish); the final
      SIGKILL waits `grace_s` (the longest job timeout and a margin) instead of honcho's 5 s.
    - Second Ctrl-C or SIGTERM: SIGTERM again, which RQ takes as a cold shutdown (running jobs are stopped).
    - The final SIGKILL also reaches each process's descendants: RQ's work-horse runs in a process group of
      its own, which honcho's killpg of the worker's group misses.
    - A process that exits on its own stops all the others, as in honcho and `bench start` (a half-running
      bench hides the failure); it is named with its exit code, and `start` exits 1.
    - A reload (app code changed) sends SIGTERM to each of the `reloadable` processes and starts it again at
      once: the old one finishes its running job and exits (it is then "retiring", reported but not taken for
      a process that exited on its own), the new one imports the code now on disk.
    """

    def __init__(self, printer: Printer, grace_s: float, reloadable: tuple[str, ...] = ()) -> None:
        super().__init__(printer)
        self.reloadable = reloadable
        self.retiring: dict[int, str] = {}  # pid -> name of the processes replaced by a reload, still running
        self.reload_pending: list[str] = []  # changed files of a reload that waits for every process to start
        self._process_ctor = WatchedProcess
        self.grace_s = grace_s
        self.signals = 0
        self.stop_pending = False
        self.stop_started: float | None = None
        self.exited: list[tuple[str, int]] = []
        self.forced = False  # a second signal or the final SIGKILL cut running jobs short
        self.sigkill_sent = False
        self.redis_failure: str | None = None  # why the Redis started here was given up on

    @property
    def exit_code(self) -> int:
        """0 when every process stopped cleanly on request; 1 when one exited on its own or failed, or the stop
        was forced. A process killed by the stop's own SIGTERM stopped cleanly: it came before the process set its
        handler (as when the bench is stopped right after it started), so it held no job yet (a worker installs
        its warm-shutdown handler before it takes one; a scheduler's claims are atomic)."""
        codes = [
            0 if code == -signal.SIGTERM and self.stop_started is not None else code
            for code in (process.get("returncode") for process in self._processes.values())
        ]
        failed = self.exited or self.forced or self.redis_failure is not None or any(codes)
        return EXIT_FAILED if failed else EXIT_OK

    def say(self, name: str, text: str) -> None:
        """Print a line under `name` from any thread: through the event queue the loop prints from."""
        self.events.put(_message(name, text))

    def request_reload(self, changed: list[str]) -> None:
        """From the code watch's thread: have the loop reload the processes for these changed files."""
        self.events.put(Message(RELOAD, changed, datetime.datetime.now(), "system", None))

    def give_up_on_redis(self, reason: str) -> None:
        """From the Redis watch's thread: say why and have the loop stop every process (start exits 1)."""
        self.redis_failure = reason
        self.say("redis", f"{reason}; stopping the other processes")
        self.stop_pending = True  # the loop's next turn terminates, in its own thread

    def loop(self) -> None:
        """honcho's loop, which also handles a reload and the stops of the processes it replaced, and ends once
        those have stopped too."""
        self._start()
        kill_from: float | None = None
        done = False
        while True:
            try:
                self._handle(self.events.get(timeout=0.1))
            except queue.Empty:
                if done:
                    break
            if self.reload_pending and self._all_started():
                self._reload()
            done = self._all_started() and self._all_stopped() and not self.retiring
            if kill_from is None and self._all_started() and self._any_stopped():
                kill_from = time.monotonic() + KILL_CHECK_S
                self.terminate()
            if kill_from is not None and time.monotonic() > kill_from:
                self.kill()

    def _handle(self, message: Message) -> None:
        process = self._processes.get(message.name, {})
        if message.type == "line":
            self._printer.write(message)
        elif message.type == "start":
            process["pid"] = message.data["pid"]
            self._system_print(f"{message.name} started (pid={message.data['pid']})\n")
        elif message.type == "stop" and message.data.get("pid") in self.retiring:
            del self.retiring[message.data["pid"]]
            self._system_print(
                f"{message.name} (pid={message.data['pid']}, the code before the reload) stopped "
                f"(rc={message.data['returncode']})\n"
            )
        elif message.type == "stop":
            process["returncode"] = message.data["returncode"]
            self._system_print(f"{message.name} stopped (rc={message.data['returncode']})\n")
        elif message.type == RELOAD:
            self.reload_pending += [path for path in message.data if path not in self.reload_pending]

    def _reload(self) -> None:
        """SIGTERM to each reloadable process (a warm stop: its running job finishes on the code it started
        with) and a new one started at once in its place, on the code now on disk."""
        changed, self.reload_pending = self.reload_pending, []
        if self.stop_started is not None or self.signals or self.stop_pending:
            return
        names = [name for name in self.reloadable if "returncode" not in self._processes[name]]
        for name in names:  # first: when the line below shows, the old processes are already told to stop
            pid = self._processes[name].pop("pid")
            self.retiring[pid] = name
            self._procmgr.terminate(pid)
        more = f" (+{len(changed) - SHOWN_CHANGES} more)" if len(changed) > SHOWN_CHANGES else ""
        self._printer.write(
            _message(
                "reload",
                f"{', '.join(changed[:SHOWN_CHANGES])}{more} changed: restarting {', '.join(names)} "
                "(running jobs finish on the code they started with)",
            )
        )
        for name in names:
            process = self._processes[name]
            process["process"] = multiprocessing.Process(name=name, target=process["obj"].run, args=(self.events, True))
            process["process"].start()

    def _start(self) -> None:
        # loop() has just installed honcho's handlers, which ignore a second signal; ours replace them. SIGHUP
        # (the terminal closed) stops the bench too: the processes run in sessions of their own and never see it.
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        super()._start()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        name = signal.Signals(signum).name
        if self.stop_pending:
            return
        if self.signals > 1:
            self._system_print(f"{name} received again: stopping running jobs now\n")
            self.forced = True
            self._killall()
            return
        self._system_print(
            f"{name} received: stopping; workers finish their running jobs (up to {self.grace_s:.0f} s), "
            "press Ctrl-C again to stop them now\n"
        )
        if super()._all_started():
            self.terminate()
        else:  # honcho signals by pid, which a process reports just after it starts
            self.stop_pending = True

    def _all_started(self) -> bool:
        started: bool = super()._all_started()
        if started and self.stop_pending:
            self.stop_pending = False
            self.terminate()
        return started

    def terminate(self) -> None:
        if self.stop_started is None:
            self.stop_started = time.monotonic()
            for name, process in self._processes.items():
                returncode = process.get("returncode")
                if returncode is not None and not self.signals:
                    self.exited.append((name, returncode))
                    self._system_print(f"{name} {describe_exit(returncode)}: stopping the other processes\n")
        super().terminate()

    def _killall(self, force: bool = False) -> None:
        """honcho's, past a process being started again (no pid yet); on a forced stop, it also reaches the
        processes a reload replaced (they had their SIGTERM: another would stop their running job)."""
        targets = [(name, p["pid"]) for name, p in self._processes.items() if "pid" in p and "returncode" not in p]
        if force or self.forced:
            targets += [(name, pid) for pid, name in self.retiring.items()]
        for name, pid in targets:
            self._system_print(f"sending {'SIGKILL' if force else 'SIGTERM'} to {name} (pid {pid})\n")
            if force:
                self._procmgr.kill(pid)
            else:
                self._procmgr.terminate(pid)

    def kill(self) -> None:
        # honcho calls this on every turn of its loop from 5 s after the first process stopped.
        if self.stop_started is None or time.monotonic() - self.stop_started < self.grace_s:
            return
        if not self.sigkill_sent:
            self._system_print(f"still running {self.grace_s:.0f} s after the stop: sending SIGKILL\n")
            self.sigkill_sent = self.forced = True
        running = [p["pid"] for p in self._processes.values() if "pid" in p and "returncode" not in p]
        running += list(self.retiring)
        leftovers = [pid for leader in running for pid in descendants(leader)]
        super().kill()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def describe_exit(returncode: int) -> str:
    """How a process ended: `exited with code 1`, or `was killed by SIGKILL` for a negative return code."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, read from /proc (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and ')'
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


def grace_period_s(settings: BenchSettings) -> int:
    """How long a stop waits for running jobs: the longest stop timeout of the bench's processes."""
    return max(process.stop_timeout_s for process in bench_processes(settings))


def run_start(bench: Bench, output: TextIO, reload: bool = True) -> int:
    """Run the bench in the foreground until Ctrl-C or SIGTERM; returns 0 after a clean stop, 1 when a
    process exited on its own or failed, or the stop was forced (a second signal, or the final SIGKILL). With
    `reload`, a change to an app's source files restarts the workers and the scheduler (warm)."""
    settings = load_bench_settings(bench)
    printer = Printer(output)
    processes = bench_processes(settings)
    manager = BenchManager(printer, grace_period_s(settings), tuple(process.name for process in processes))
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}  # until the loop's own
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    dashboard: BenchProcess | None = None
    if web_extra_installed():
        dashboard = dashboard_process(free_local_port(dashboard_port(settings)))
        processes.append(dashboard)
    for process in processes:
        command = "exec " + shlex.join([*bench_command(bench), *process.args])
        manager.add_process(process.name, command, env=env, cwd=str(bench.root))
    watch: RedisWatch | None = None
    code_watch = None
    if reload:
        code_watch = CodeWatch(bench, lambda changed: manager.request_reload([shown(bench, p) for p in changed]))
    try:
        local = _ensure_redis(bench, settings, printer)
        if local is not None:
            watch = RedisWatch(
                bench,
                local,
                lambda text: manager.say("redis", text),
                manager.give_up_on_redis,
                describe_exit,
            )
            watch.start()
        if dashboard is not None:
            _say(printer, "dashboard", f"dashboard at http://127.0.0.1:{dashboard.args[-1]}/")
        if code_watch is not None:
            roots = ", ".join(shown(bench, root) for root in code_watch.roots) or "no app found"
            _say(printer, "reload", f"watching {roots}: a change restarts the workers and the scheduler")
            code_watch.start()
        manager.loop()
    finally:
        if code_watch is not None:
            code_watch.stop()
        if watch is not None:
            code = watch.stop()
            _say(printer, "redis", f"redis-server stopped (rc={code})")
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return int(manager.exit_code)


def _ensure_redis(bench: Bench, settings: BenchSettings, printer: Printer) -> LocalRedis | None:
    """None when a Redis answers at the bench's URL, else a redis-server started for it."""
    url = settings.redis_url
    if redis_answers(url):
        _say(printer, "redis", f"using the Redis that answers at {redact_url(url)}")
        return None
    address = local_address(url)
    if address is None:
        raise RedisUnavailable(
            f"No Redis answers at {redact_url(url)}, and `start` runs one only for a local redis:// or unix:// URL.",
            hint="Start that Redis, or point redis_queue in sites/common_site_config.toml at this host.",
        )
    local = start_local_redis(bench, url, address)
    _say(
        printer,
        "redis",
        f"redis-server started at {redact_url(url)} (pid={local.process.pid}, log {local.log_path})",
    )
    return local


def _say(printer: Printer, name: str, text: str) -> None:
    printer.write(_message(name, text))


def _message(name: str, text: str) -> Message:
    return Message(type="line", data=text + "\n", time=datetime.datetime.now(), name=name, colour=None)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
