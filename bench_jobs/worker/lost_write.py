"""A write of a job's life whose reply was lost (a dropped connection, a reply that timed out): it is looked up,
never resent blindly. Redis has either run it or never will once the connection that sent it is gone: a
dropped connection is gone already, and one that timed out is killed here by its client id (CLIENT KILL ID,
as jobs/lost_reply.py does for an enqueue). Then the write's own trace says whether it landed:

- a claim (BenchWorker.claim_execution) landed when its execution is in the started registry;
- a job's outcome (success, failure, retry) landed when its execution left the started registry: the one
  transaction that records the outcome also ends the claim.
"""

from __future__ import annotations

import contextlib
from typing import Any

import redis
from rq.executions import Execution
from rq.registry import StartedJobRegistry

from ..jobs.lost_reply import client_id


def client_ids(conn: redis.Redis) -> list[int]:
    """The server-side ids of the connections `conn`'s pool holds now (from their RESP3 handshake)."""
    pool: Any = conn.connection_pool
    held = [*getattr(pool, "_available_connections", []), *getattr(pool, "_in_use_connections", [])]
    return [found for found in (client_id(connection) for connection in held) if found is not None]


def client_ids_of(pipe: Any) -> list[int]:
    """The id of the connection a WATCHing pipeline holds (the one its transaction goes out on)."""
    found = client_id(pipe.connection) if getattr(pipe, "connection", None) is not None else None
    return [] if found is None else [found]


def fence(conn: redis.Redis, ids: list[int]) -> None:
    """Kill these connections (gone already after a drop), so that nothing they sent can still run; raises
    redis' ConnectionError or TimeoutError while Redis does not answer."""
    for found in ids:
        with contextlib.suppress(redis.ResponseError):  # no such client (it is gone), or CLIENT refused
            conn.client_kill_filter(_id=str(found))


def in_started_registry(conn: redis.Redis, registry: StartedJobRegistry, execution: Execution) -> bool:
    """Whether `execution` still holds its job's place among the started jobs."""
    return conn.zscore(registry.key, execution.composite_key) is not None
