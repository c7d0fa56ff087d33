"""Whether a bench-jobs worker is alive: one answer for show-queue, doctor, orphan recovery and the scheduler.

A worker keeps `bench_jobs:<bench>:alive:<name>` (15 s TTL) holding "<host>|<machine>|<pid>". The key must
exist; and when the worker ran on this machine (same boot and pid namespace, not merely the same hostname,
which containers share) its process must exist too, so a SIGKILLed worker counts as dead at once.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Collection
from pathlib import Path
from typing import Any, cast

import redis

from .keys import Keys


@functools.cache
def machine_id() -> str:
    """This boot of this machine and its pid namespace: equal ids mean pids can be checked with kill(0)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}:{namespace}"


def alive_value(pid: int) -> str:
    return f"{socket.gethostname()}|{machine_id()}|{pid}"


def worker_is_alive(value: bytes | str | None) -> bool:
    """Whether the worker whose alive key holds `value` lives (None: the key expired or never existed)."""
    if not value:
        return False
    text = value.decode() if isinstance(value, bytes) else value
    parts = text.split("|")
    if len(parts) != 3 or not parts[1] or parts[1] != machine_id() or not parts[2].isdigit():
        return True
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_workers(conn: redis.Redis, keys: Keys, worker_names: Collection[str]) -> set[str]:
    """The names among `worker_names` that are alive (one round trip)."""
    names = sorted(set(worker_names))
    if not names:
        return set()
    values = cast(list[Any], conn.mget([keys.worker_alive(name) for name in names]))
    return {name for name, value in zip(names, values, strict=True) if worker_is_alive(value)}
