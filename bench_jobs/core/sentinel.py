"""A Redis master found through Sentinel (Frappe's redis_queue_sentinel_* keys): the client every process uses,
and what each Sentinel says about the master, its replicas and its peers (for `doctor`).

redis-py's SentinelConnectionPool asks the Sentinels for the master's address whenever it opens a connection,
and its connections turn a READONLY reply (the master they talk to was demoted) into a ConnectionError after
dropping the connection. So a failover reaches bench-jobs as a short outage: the command in flight fails (a
lost reply is resolved by lookup, jobs/lost_reply.py), the next one connects to the new master. Lua scripts
go through redis-py Script objects, which reload themselves on NOSCRIPT (a promoted replica has an empty script
cache). No automatic retry here either, for the reason connection.py gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from .config import BenchSettings, SentinelSettings

SENTINEL_TIMEOUT_S = 2.0  # a Sentinel that does not answer within this is skipped for the next one


def sentinel_client(settings: BenchSettings, sentinel: SentinelSettings, **client_kwargs: Any) -> redis.Redis:
    """A client of the master that `sentinel` names, following failovers; `client_kwargs` as for redis.Redis."""
    manager = Sentinel(list(sentinel.sentinels), sentinel_kwargs=_sentinel_kwargs(sentinel))
    client: redis.Redis = manager.master_for(
        sentinel.service,
        db=_db_of(settings.redis_url),
        username=sentinel.master_username,
        password=sentinel.master_password,
        **client_kwargs,
    )
    return client


def _sentinel_kwargs(sentinel: SentinelSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT_S, "socket_connect_timeout": SENTINEL_TIMEOUT_S}
    if sentinel.sentinel_username:
        kwargs["username"] = sentinel.sentinel_username
    if sentinel.sentinel_password:
        kwargs["password"] = sentinel.sentinel_password
    return kwargs


def _db_of(url: str) -> int:
    """The database number of `redis_queue` (`redis://host/2`, `?db=2`): with Sentinel it gives only that."""
    try:
        return int(redis.connection.parse_url(url).get("db", 0))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        return 0


def master_address(conn: redis.Redis) -> tuple[str, int] | None:
    """The address Sentinel gives now for `conn`'s master (asking the Sentinels); None for a plain client."""
    pool = conn.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
    return str(host), int(port)


@dataclass
class SentinelReport:
    """What one Sentinel says about the service: its master, replicas and the other Sentinels it knows."""

    address: str
    error: str | None = None
    master: str | None = None
    master_flags: str = ""
    replicas: list[str] = field(default_factory=list)  # those it does not flag down
    replicas_down: list[str] = field(default_factory=list)
    other_sentinels: int = 0
    quorum: int = 0


def survey(sentinel: SentinelSettings) -> list[SentinelReport]:
    """Ask every Sentinel about the service, one at a time; one that does not answer says so in `error`."""
    reports = []
    for host, port in sentinel.sentinels:
        report = SentinelReport(f"{host}:{port}")
        client = redis.Redis(host, port, decode_responses=True, **_sentinel_kwargs(sentinel))
        try:
            state: dict[str, Any] = client.sentinel_master(sentinel.service)  # type: ignore[assignment]
            report.master = f"{state['ip']}:{state['port']}"
            report.master_flags = str(state.get("flags", ""))
            report.other_sentinels = int(state.get("num-other-sentinels", 0))
            report.quorum = int(state.get("quorum", 0))
            for replica in client.sentinel_slaves(sentinel.service):  # type: ignore[union-attr]
                where = f"{replica['ip']}:{replica['port']}"
                down = replica.get("is_sdown") or replica.get("is_odown") or "disconnected" in str(replica.get("flags"))
                (report.replicas_down if down else report.replicas).append(where)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            report.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        finally:
            client.close()
        reports.append(report)
    return reports
