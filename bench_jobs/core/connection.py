"""Connecting to the bench's Redis, and saying why it failed without ever showing a password."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import RedisUnavailable
from .config import REDIS_URL_ENV, BenchSettings, redact_url
from .replication import set_policy
from .rq_acl import rq_credentials

CONNECT_TIMEOUT_S = 5.0
# How long a command waits for its reply before the client gives up (redis-py 8 defaults to 5 s; before 8, to
# never). Longer than any command bench-jobs sends except a worker's blocking reads, for which RQ raises it on
# the worker's connection to its dequeue timeout plus 10 s (Worker._set_connection).
SOCKET_TIMEOUT_S = 10.0
HEALTH_CHECK_INTERVAL_S = 30
# No automatic retry, on a timeout or a broken connection alike: resending a write whose reply was lost runs it
# twice. A lost reply is resolved by looking the write up (jobs/lost_reply.py); reads are retried by callers.
NO_RETRY = Retry(NoBackoff(), 0)

_connections: dict[str, redis.Redis] = {}
_forget_callbacks: list[Callable[[], None]] = []
_lua_scripts: weakref.WeakKeyDictionary[redis.Redis, dict[str, Any]] = weakref.WeakKeyDictionary()


def lua(conn: redis.Redis, source: str) -> Any:
    """The Lua script `source` registered on `conn`, made once per client and forgotten with it (redis-py
    sends EVALSHA and loads the script on NOSCRIPT). Keyed by the client itself, not its id(), which a later
    client may reuse."""
    per_client = _lua_scripts.get(conn)
    if per_client is None:
        per_client = _lua_scripts[conn] = {}
    script = per_client.get(source)
    if script is None:
        script = per_client[source] = conn.register_script(source)
    return script


def connect(settings: BenchSettings) -> redis.Redis:
    """A client for the bench's Redis (one per target, login and process; RQ needs bytes, so no decoding), with the
    timeouts above; `socket_timeout=` and the like in the URL's query win over them. With Sentinel enabled, a
    client of the master that the Sentinels name, following failovers (`_new_client`). With
    `use_rq_auth` it logs in as the bench's ACL user."""
    credentials = rq_credentials(settings.common)
    # One client per target, login and wait policy: two benches of one process may share a URL, each with its
    # own ACL user or redis_queue_wait_replicas (the policy belongs to the client: replication.set_policy).
    if settings.sentinel is not None:
        key = settings.sentinel.label + _variant(settings, credentials)  # the label names no password
    else:
        key = settings.redis_url + _variant(settings, credentials)
    conn = _connections.get(key)
    if conn is None:
        conn = _new_client(settings)
        # The bench's ACL user (create-rq-users) over the URL's own credentials, which from_url would keep, or
        # over `redis_queue_master_username/password` with Sentinel.
        conn.connection_pool.connection_kwargs.update(credentials)
        _connections[key] = conn
    set_policy(conn, settings)
    return conn


def _new_client(settings: BenchSettings) -> redis.Redis:
    """A client with the timeouts above and no automatic retry: of the URL, or of the master the Sentinels
    name (following failovers)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "retry": NO_RETRY,
        "retry_on_timeout": False,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        **_client_identity(),
    }
    if settings.sentinel is not None:
        from .sentinel import sentinel_client

        return sentinel_client(settings, settings.sentinel, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


def _variant(settings: BenchSettings, credentials: dict[str, str]) -> str:
    """What tells apart the clients of one Redis in a process: the login, and how acknowledged writes wait."""
    login = f" as {credentials['username']}" if credentials else ""
    wait = (
        f" waiting {settings.wait_timeout_ms} ms for {settings.wait_replicas} replica(s)"
        if settings.wait_replicas
        else ""
    )
    return login + wait


def shown_target(settings: BenchSettings) -> str:
    """The bench's Redis as messages name it: the redacted URL, or the Sentinel service and its Sentinels."""
    return settings.sentinel.label if settings.sentinel is not None else redact_url(settings.redis_url)


def _shown_key(key: str) -> str:
    return key if key.startswith("Sentinel service ") else redact_url(key)


def down_error(conn: redis.Redis, exc: BaseException) -> RedisUnavailable:
    """RedisUnavailable (exit 3) for a command on `conn` that met a connection error or a refused password:
    what library callers get instead of redis-py's own errors, naming the redacted URL."""
    url = next((url for url, known in _connections.items() if known is conn), None)
    shown = _shown_key(url) if url else "Redis"
    if is_auth_failure(exc):
        return auth_failure(exc, shown if url else None)
    return RedisUnavailable(
        f"{'Redis at ' + shown if url else 'Redis'} does not answer: {describe_connection_error(exc)}",
        hint=unreachable_hint(),
    )


FULL_HINT = (
    "Free memory in Redis: raise `maxmemory` (redis.conf, or CONFIG SET maxmemory), or purge what the bench "
    "keeps: `bench-jobs purge-jobs --failed`, shorter `job_result_ttl` and `job_failure_ttl`. Workers wait for room "
    "and go on."
)


def full_error_message(conn: redis.Redis) -> tuple[str, str]:
    """The message and hint of an error for a write that a full Redis refused (maxmemory reached under
    `noeviction`), naming the redacted URL."""
    return f"{_shown(conn)} is full (used memory reached maxmemory) and refuses writes", FULL_HINT


def _shown(conn: redis.Redis) -> str:
    url = next((url for url, known in _connections.items() if known is conn), None)
    return f"Redis at {_shown_key(url)}" if url else "Redis"


def _client_identity() -> dict[str, Any]:
    """CLIENT SETINFO naming bench-jobs, with redis-py's version given up front: left to itself, redis-py
    reads its package metadata for every new connection, which costs each forked job ~2 ms."""
    from .version import __version__

    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py before 8
        return {"lib_name": f"redis-py(bench-jobs_v{__version__})", "lib_version": redis.__version__}
    return {"driver_info": DriverInfo(lib_version=redis.__version__).add_upstream_driver("bench-jobs", __version__)}


def connect_checked(settings: BenchSettings) -> redis.Redis:
    """`connect`, then PING; RedisUnavailable (exit 3) naming the redacted URL when Redis does not answer."""
    conn = connect(settings)
    try:
        conn.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
        if is_auth_failure(exc):
            raise auth_failure(exc, shown_target(settings)) from exc
        if isinstance(exc, redis.ResponseError):
            raise
        raise RedisUnavailable(
            f"Redis at {shown_target(settings)} does not answer: {describe_connection_error(exc)}",
            hint=unreachable_hint(),
        ) from exc
    return conn


def _url_source() -> str:
    return f"${REDIS_URL_ENV}" if os.environ.get(REDIS_URL_ENV) else "redis_queue in sites/common_site_config.toml"


def unreachable_hint() -> str:
    """What to do when Redis does not answer, naming where its URL came from."""
    return f"Start Redis, or fix {_url_source()} (`bench-jobs start` runs one for development)."


_AUTH_REPLIES = ("NOAUTH", "WRONGPASS")


def is_auth_failure(exc: BaseException) -> bool:
    """Whether Redis refused the URL's credentials (a wrong or missing password, or an unknown ACL user),
    whichever command met the refusal: redis-py raises AuthenticationError for the NOAUTH and WRONGPASS
    replies, and a plain ResponseError carrying them where it does not classify the reply."""
    if isinstance(exc, redis.AuthenticationError):
        return True
    return isinstance(exc, redis.ResponseError) and (
        getattr(exc, "status_code", None) in _AUTH_REPLIES or str(exc).split(" ", 1)[0] in _AUTH_REPLIES
    )


def auth_failure(exc: BaseException, shown_url: str | None = None) -> RedisUnavailable:
    """RedisUnavailable (exit 3) saying that authentication failed and where the password comes from; the
    reply Redis gave is quoted (it never holds the password), the password never is."""
    where = f"Redis at {shown_url}" if shown_url else "Redis"
    return RedisUnavailable(
        f"{where} refused the credentials: authentication failed ({describe_connection_error(exc)})",
        hint=f"Check the password (and ACL user name) in {_url_source()}; '/', '?', '#', '[', ']' and '@' in it "
        "must be percent-encoded.",
    )


def describe_connection_error(exc: BaseException) -> str:
    """A one-line reason for a connection failure."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def on_forget(callback: Callable[[], None]) -> None:
    """Have `forget_connections` also call `callback`: the layers above drop what they cached per client."""
    _forget_callbacks.append(callback)


def forget_connections() -> None:
    """Close and drop cached clients (after fork, and in tests), and whatever was cached with them."""
    for conn in _connections.values():
        conn.close()
    _connections.clear()
    for callback in _forget_callbacks:
        callback()
