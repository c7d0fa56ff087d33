"""Jobs that leave a trace: each call appends a JSON line to `<bench>/logs/<site>/calls.jsonl`."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import bench_jobs
from bench_jobs.core.context import current_context


def record(event: str, **data: Any) -> None:
    context = current_context()
    site = context.site if context else "-"
    folder = context.bench.logs_dir / site if context else None
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"event": event, "site": site, "pid": os.getpid(), **data}, default=repr)
    with open(folder / "calls.jsonl", "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def before(**info: Any) -> None:
    """Takes **kwargs, so it gets every keyword Frappe passes a before_job hook."""
    record("before_job", **info)


def after(method: str, result: Any) -> None:
    """Takes only two of the keywords an after_job hook is offered: it must get just those."""
    record("after_job", method=method, result=result)


def every_tick() -> None:
    record("every_tick")


def hourly() -> None:
    record("hourly")


def daily() -> None:
    record("daily")


def weekly() -> None:
    record("weekly")


def monthly() -> None:
    record("monthly")


def yearly() -> None:
    record("yearly")


def daily_long() -> None:
    record("daily_long")


def quarter_hourly() -> None:
    record("quarter_hourly")


def at_half_past_two() -> None:
    record("at_half_past_two")


def echo(record_id: str, **extra: Any) -> dict[str, Any]:
    record("echo", record_id=record_id, extra=extra)
    return {"record_id": record_id, "site": bench_jobs.current_site(), "extra": extra}


def site_setting(key: str) -> Any:
    return bench_jobs.site_config().get(key)


def chatty() -> list[int]:
    print("progress: halfway")
    return [1, 2]


def fail(message: str = "boom") -> None:
    record("fail", message=message)
    raise ValueError(message)


def fail_unless_file(path: str) -> str:
    """Fails until `path` exists: a job that a test can make fail, then succeed when requeued."""
    record("fail_unless_file", path=path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no marker file at {path}")
    return "marker found"


def sleep(seconds: float) -> str:
    record("sleep_start", seconds=seconds)
    time.sleep(seconds)
    record("sleep_end", seconds=seconds)
    return "slept"


class Invoice:
    def __init__(self, name: str) -> None:
        self.name = name

    def submit(self, note: str = "") -> str:
        record("invoice_submit", name=self.name, note=note)
        return f"submitted {self.name}"


def timed(seconds: float, tag: str) -> None:
    """Sleeps, and records when it started and ended (wall clock): intervals of a capped site must not overlap."""
    started = time.time()
    time.sleep(seconds)
    record("timed", tag=tag, started=started, ended=time.time())


# Jobs for the work-horse tests: what a job sees of its process, and jobs that take their horse down.

MB = 1024 * 1024
_hoard: list[Any] = []


def whoami() -> dict[str, Any]:
    """The process a job runs in and the state it finds there (site, environment, cwd, RQ's current job)."""
    from rq import get_current_job

    job = get_current_job()
    with open("/proc/self/statm", "rb") as statm:
        rss_mb = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // MB
    return {
        "pid": os.getpid(),
        "worker_pid": os.getppid(),
        "site": bench_jobs.current_site(),
        "leaked": os.environ.get("LEAKED_BY_A_JOB"),
        "rq_job_id": os.environ.get("RQ_JOB_ID"),
        "current_job": job.id if job else None,
        "cwd": os.getcwd(),
        "rss_mb": rss_mb,
    }


def leave_a_mess() -> dict[str, Any]:
    """Changes what a careless job may change and never puts it back."""
    from bench_jobs.core import context

    os.environ["LEAKED_BY_A_JOB"] = "yes"
    os.chdir("/")
    entered = context.site_context("beta.test")
    entered.__enter__()  # entered, never left (and kept, so that no garbage collection leaves it either)
    _hoard.append(entered)
    return whoami()


def hoard(mb: int) -> int:
    """Keeps `mb` MB resident in the process (written, so the pages are really there)."""
    _hoard.append(b"\x01" * (mb * MB))
    return os.getpid()


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


def exit_now(code: int) -> None:
    os._exit(code)


def sys_exit(code: int) -> None:
    import sys

    sys.exit(code)


def sigkill_self() -> None:
    """What the kernel's OOM killer does to a process."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def ignore_timeout(seconds: float) -> str:
    """Blocks SIGALRM (the timeout RQ sets in the horse), so only the worker can stop it."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    record("ignore_timeout_start", seconds=seconds)
    time.sleep(seconds)
    return "overran"
