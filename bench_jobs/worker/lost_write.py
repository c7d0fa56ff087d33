"""A write of a job's life whose reply was lost (a dropped connection, a reply that timed out): it is looked up,
never resent blindly. Redis has either run it or never will once the connection that sent it is gone: a
dropped connection is gone already, and one that timed out is killed by its client id (`fence`, which
jobs/lost_reply.py uses for an enqueue too). Then the write's own trace says whether it landed:

- a claim (BenchWorker.claim_execution) landed when its execution is in the started registry;
- a job's outcome (success, failure, retry) landed when its execution left the started registry: the one
  transaction that records the outcome also ends the claim.
"""

from __future__ import annotations

from typing import Any

import redis
from rq.executions import Execution
from rq.registry import StartedJobRegistry

from ..jobs.lost_reply import Sender, sender_of


def client_ids(conn: redis.Redis) -> list[Sender]:
    """The connections `conn`'s pool holds now (ids from their RESP3 handshake; one without an id sent nothing
    that can still run: it never connected, or its connection dropped)."""
    pool: Any = conn.connection_pool
    held = [*getattr(pool, "_available_connections", []), *getattr(pool, "_in_use_connections", [])]
    return [sender for sender in (sender_of(conn, connection) for connection in held) if sender is not None]


def client_ids_of(pipe: Any) -> list[Sender]:
    """The connection a WATCHing pipeline holds (the one its transaction goes out on)."""
    found = sender_of(pipe, pipe.connection) if getattr(pipe, "connection", None) is not None else None
    return [] if found is None else [found]


def in_started_registry(conn: redis.Redis, registry: StartedJobRegistry, execution: Execution) -> bool:
    """Whether `execution` still holds its job's place among the started jobs."""
    return conn.zscore(registry.key, execution.composite_key) is not None
