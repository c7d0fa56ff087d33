"""Acknowledged means kept: with `redis_queue_wait_replicas = N`, a write that acknowledges something (an
enqueue, a scheduler's slot claim, a job's outcome) is followed by WAIT N timeout on the same connection, and
is reported done only once N replicas have it. Fewer in time is NotReplicated, never a silent success.

WAIT counts the replicas that reached the last write of the connection it is sent on, so it must follow the
write on that connection: in the write's own pipeline (`queue_wait` + `check_wait`), or, after a write made
by code we do not own (RQ's bookkeeping), as the next command of a single-threaded process (`acknowledge`):
redis-py's pool hands back the connection released last. Replication is one ordered stream, so a replica that
has this write also has every write the master ran before it, from any client.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from ..errors import NotReplicated
from .config import BenchSettings

MARKER_TTL_MS = 60_000  # confirm_replicated's own write


@dataclass(frozen=True)
class WaitPolicy:
    replicas: int
    timeout_ms: int


_policies: weakref.WeakKeyDictionary[redis.Redis, WaitPolicy] = weakref.WeakKeyDictionary()


def set_policy(conn: redis.Redis, settings: BenchSettings) -> None:
    """Have the acknowledging writes on `conn` wait as `settings` say (connection.connect calls it)."""
    if settings.wait_replicas:
        _policies[conn] = WaitPolicy(settings.wait_replicas, settings.wait_timeout_ms)
    else:
        _policies.pop(conn, None)


def policy(conn: redis.Redis) -> WaitPolicy | None:
    """How acknowledging writes on `conn` wait for replicas; None when they do not."""
    return _policies.get(conn)


def queue_wait(conn: redis.Redis, pipe: Any) -> bool:
    """Queue WAIT as the last command of `pipe` (a pipeline of `conn`) when `conn` waits; whether it did."""
    wait = policy(conn)
    if wait is None:
        return False
    pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)
    return True


def check_wait(conn: redis.Redis, acked: Any, what: str, job_ids: Sequence[str] = ()) -> None:
    """NotReplicated unless WAIT's reply `acked` reaches the replicas `conn` waits for."""
    wait = policy(conn)
    if wait is None or (isinstance(acked, int) and acked >= wait.replicas):
        return
    if isinstance(acked, Exception):
        raise acked
    raise NotReplicated(
        f"{what} is on the Redis master, but only {acked} of the {wait.replicas} replica(s) that "
        f"redis_queue_wait_replicas asks for confirmed it within {wait.timeout_ms} ms: a failover now could lose it.",
        hint="Check the replicas (`bench-jobs doctor`, INFO replication on the master); lower "
        "redis_queue_wait_replicas to the replicas you run, or raise redis_queue_wait_timeout_ms."
        + (" Look the job up before sending it again: it IS queued." if job_ids else ""),
        job_ids=list(job_ids),
    )


def acknowledge(conn: redis.Redis, what: str) -> None:
    """WAIT for the replicas after the write just made on `conn` by this thread; NotReplicated when too few."""
    wait = policy(conn)
    if wait is not None:
        acked = conn.execute_command("WAIT", wait.replicas, wait.timeout_ms)  # type: ignore[no-untyped-call]
        check_wait(conn, acked, what)


def confirm_replicated(conn: redis.Redis, marker_key: str, what: str, job_ids: Sequence[str] = ()) -> None:
    """WAIT for the replicas after a write found by a lookup (one whose reply was lost): WAIT counts the replicas
    that reached the last write of its own connection, so a write of ours (`marker_key`, counted, expiring) goes
    first on the same connection; replication is one ordered stream, so replicas that have it have the write
    found. NotReplicated when too few."""
    wait = policy(conn)
    if wait is None:
        return
    with conn.pipeline(transaction=False) as pipe:
        pipe.incr(marker_key)
        pipe.pexpire(marker_key, MARKER_TTL_MS)
        pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)  # type: ignore[no-untyped-call]
        acked = pipe.execute()[-1]
    check_wait(conn, acked, what, job_ids)
