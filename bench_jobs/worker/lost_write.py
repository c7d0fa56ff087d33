"""A write of a job's life whose reply was lost (a dropped connection, a reply that timed out): it is looked up,
never resent blindly. Redis has either run it or never will once the connection that sent it is gone: a
dropped connection is gone already, and one that timed out is killed here by its client id (CLIENT KILL ID,
as jobs/lost_reply.py does for an enqueue). Then the write's own trace says whether it landed:

- a claim (BenchWorker.claim_execution) landed when its execution is in the started registry;
- a job's outcome (success, failure, retry) landed when its execution left the started registry: the one
  transaction that records the outcome also ends the claim.
"""

from __future__ import annotations

from typing import Any

import redis
from rq.executions import Execution
from rq.registry import StartedJobRegistry

from ..core.sentinel import master_address
from ..jobs.lost_reply import client_id

# A connection that sent a write: its server-side id, and the server it is on (host, port) when Sentinel picks
# the server, else None (one server: the URL's).
Sender = tuple[int, tuple[str, int] | None]


def client_ids(conn: redis.Redis) -> list[Sender]:
    """The connections `conn`'s pool holds now (ids from their RESP3 handshake)."""
    pool: Any = conn.connection_pool
    held = [*getattr(pool, "_available_connections", []), *getattr(pool, "_in_use_connections", [])]
    return [sender for sender in (_sender(conn, connection) for connection in held) if sender is not None]


def client_ids_of(pipe: Any) -> list[Sender]:
    """The connection a WATCHing pipeline holds (the one its transaction goes out on)."""
    found = _sender(pipe, pipe.connection) if getattr(pipe, "connection", None) is not None else None
    return [] if found is None else [found]


def _sender(client: Any, connection: Any) -> Sender | None:
    found = client_id(connection)
    if found is None:
        return None
    sentinel = hasattr(client.connection_pool, "master_address")  # redis-py's SentinelConnectionPool
    return found, ((str(connection.host), int(connection.port)) if sentinel else None)


def fence(conn: redis.Redis, senders: list[Sender]) -> bool:
    """Kill these connections (gone already after a drop), so that nothing they sent can still run; raises
    redis' ConnectionError or TimeoutError while Redis does not answer. A connection to a master Sentinel no
    longer names is left alone: that server adds nothing to the new master's data, and its client id means
    nothing on the new one (killing it there could end a stranger's connection). False when Redis refused the
    kill (a bench's ACL user may not run CLIENT KILL): then a write still on its way may land after a lookup."""
    now_at = master_address(conn) if any(server is not None for _, server in senders) else None
    sure = True
    for found, server in senders:
        if server is not None and server != now_at:
            continue
        try:
            conn.client_kill_filter(_id=str(found))
        except redis.exceptions.NoPermissionError:
            sure = False
        except redis.ResponseError:  # no such client: it is gone
            pass
    return sure


def in_started_registry(conn: redis.Redis, registry: StartedJobRegistry, execution: Execution) -> bool:
    """Whether `execution` still holds its job's place among the started jobs."""
    return conn.zscore(registry.key, execution.composite_key) is not None
