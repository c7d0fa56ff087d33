"""`create-rq-users`: a Redis ACL user for the bench that reaches only the bench's keys (core/rq_acl.py),
made with the admin's credentials, checked by logging in as it, and written into the common config
(`use_rq_auth`, `rq_username`, `rq_password`, readable by its owner only), so every process logs in as it."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import redis

from ..core.bench import Bench
from ..core.config import load_bench_settings, redact_url, url_has_password
from ..core.config_writer import update_config_file
from ..core.connection import (
    CONNECT_TIMEOUT_S,
    NO_RETRY,
    SOCKET_TIMEOUT_S,
    auth_failure,
    describe_connection_error,
    is_auth_failure,
)
from ..core.keys import Keys
from ..core.rq_acl import acl_rules, rq_credentials, rq_username
from ..errors import BenchJobsError, ConfigError, RedisUnavailable
from .checks import Check
from .redis_checks import config_value

ADMIN_PASSWORD_ENV = "BENCH_JOBS_REDIS_ADMIN_PASSWORD"
# Redis 7: denying one subcommand (`-script|flush`, `-client|tracking`) and read-only key rules (`%R~`, for
# `rq:suspended`, which any bench could otherwise set to stop every bench's workers) came with it.
MIN_ACL_VERSION = (7, 0)
PASSWORD_BYTES = 32
ADMIN_HINT = (
    f"Give the credentials of a Redis user that may run ACL: ${ADMIN_PASSWORD_ENV} (its password) and "
    "--admin-user (default: the user of redis_queue, else `default`)."
)


@dataclass(frozen=True)
class RqUserResult:
    """What create-rq-users did. No field holds a password but `admin_password`, the new one of the admin
    user (--set-admin-password), which is shown once."""

    username: str
    acl_line: str  # the user as an aclfile line, its password as its SHA-256
    created: bool  # the user did not exist before
    new_password: bool  # the config had no password for this user, or --new-password
    config_file: str
    saved_to: str | None  # the aclfile ACL SAVE wrote; None: the user lives in Redis's memory only
    aclfile: list[str]  # every user of the Redis (ACL LIST), passwords hashed: an aclfile as it stands
    admin_password: str | None = field(default=None, repr=False)
    warnings: list[str] = field(default_factory=list)


def create_rq_users(
    bench: Bench,
    admin_user: str | None = None,
    admin_password: str | None = None,
    new_password: bool = False,
    set_admin_password: bool = False,
) -> RqUserResult:
    """Create (or update) the bench's ACL user, check it, and write it into the common config; see the module."""
    settings = load_bench_settings(bench)
    admin = _client(settings.redis_url, username=admin_user, password=admin_password)
    shown = redact_url(settings.redis_url)
    _check_redis_version(admin, shown)
    username = rq_username(settings.bench_id)
    common = settings.common
    password = common.get("rq_password") if common.get("rq_username") == username else None
    fresh = new_password or not isinstance(password, str) or not password
    if fresh:
        password = secrets.token_hex(PASSWORD_BYTES)
    assert isinstance(password, str)
    rules = acl_rules(settings.bench_id)
    secret = "#" + hashlib.sha256(password.encode()).hexdigest()
    created = not _admin(admin, "ACL", "GETUSER", username)
    _admin(admin, "ACL", "SETUSER", username, "reset", "on", secret, *rules)
    _verify(settings.redis_url, username, password, Keys(settings.bench_id).heartbeat)
    update_config_file(
        bench.common_config_path,
        {"use_rq_auth": True, "rq_username": username, "rq_password": password},
        private=True,
    )
    warnings = []
    new_admin_password = None
    admin_name = admin_user or _url_user(settings.redis_url) or "default"
    if set_admin_password:
        if admin_name == "default":
            warnings.append(
                "Redis's `default` user has a new password: every client that logs in without a user name (other "
                "benches and apps on this Redis not yet given their own user) is refused from its next connection."
            )
        new_admin_password = secrets.token_hex(PASSWORD_BYTES)
        digest = hashlib.sha256(new_admin_password.encode()).hexdigest()
        _admin(admin, "ACL", "SETUSER", admin_name, "on", "resetpass", "#" + digest)
    if _needs_no_password(admin, "default"):
        warnings.append(
            "Redis's `default` user needs no password: any client that connects without credentials reaches "
            "every bench's keys. Give it one: --set-admin-password (for `default`), or `requirepass` in redis.conf."
        )
    if url_has_password(settings.redis_url):
        warnings.append(
            f"redis_queue ({shown}) still holds a password. Processes now log in as {username}; if that password "
            "is the admin's, remove it from the URL so no process of the bench can read it."
        )
    aclfile = config_value(admin, "aclfile") or None
    saved_to = None
    if aclfile:
        try:
            _run(admin, "ACL", "SAVE")
            saved_to = aclfile
        except redis.ResponseError as exc:
            warnings.append(f"ACL SAVE to {aclfile} failed ({describe_connection_error(exc)}).")
    if saved_to is None:
        warnings.append(
            "Redis keeps the user in memory only (no aclfile is set): after a restart of Redis every process of "
            "the bench is refused. Add the lines of --print-aclfile to an aclfile that redis.conf names (`aclfile "
            "/etc/redis/users.acl`), or run CONFIG REWRITE where users live in redis.conf."
        )
    listed = _run(admin, "ACL", "LIST")
    admin.close()
    return RqUserResult(
        username=username,
        acl_line=f"user {username} on {secret} {' '.join(rules)}",
        created=created,
        new_password=fresh,
        config_file=str(bench.common_config_path),
        saved_to=saved_to,
        aclfile=[_text(line) for line in listed],
        admin_password=new_admin_password,
        warnings=warnings,
    )


def rq_user_check(conn: redis.Redis, common: dict[str, Any]) -> Check | None:
    """doctor's `redis-user` (with use_rq_auth only): the bench logs in as its ACL user, which is refused CONFIG."""
    credentials = rq_credentials(common)
    if not credentials:
        return None
    try:
        whoami = _text(_run(conn, "ACL", "WHOAMI"))
    except redis.ResponseError:
        whoami = "?"
    limited = config_value(conn, "maxmemory") is None
    ok = whoami == credentials["username"] and limited
    detail = f"logged in as {whoami}, " + ("refused CONFIG" if limited else "allowed CONFIG: not limited to its keys")
    return Check("redis-user", ok, detail, "" if ok else "Run `bench-jobs create-rq-users` again as the admin.")


def _client(url: str, **credentials: str | None) -> redis.Redis:
    """A client of `url` that logs in with `credentials` where given, over the URL's own."""
    conn = redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=NO_RETRY,
        retry_on_timeout=False,
    )
    conn.connection_pool.connection_kwargs.update({k: v for k, v in credentials.items() if v is not None})
    return conn


def _check_redis_version(admin: redis.Redis, shown: str) -> None:
    """ConfigError unless Redis has the ACL rules the bench's user needs (MIN_ACL_VERSION); other errors say why
    it did not answer the admin's login."""
    try:
        info: dict[str, Any] = admin.info("server")
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
        if is_auth_failure(exc):
            failure = auth_failure(exc, shown)
            raise RedisUnavailable(failure.message, hint=f"{ADMIN_HINT} {failure.hint}") from exc
        if isinstance(exc, redis.ResponseError):
            raise BenchJobsError(f"Redis at {shown} refused INFO: {exc}", hint=ADMIN_HINT) from exc
        raise RedisUnavailable(f"Redis at {shown} does not answer: {describe_connection_error(exc)}") from exc
    version = str(info.get("redis_version", "0"))
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if numbers < MIN_ACL_VERSION:
        raise ConfigError(
            f"Redis {version} at {shown} cannot deny single subcommands nor grant read-only keys: create-rq-users "
            "needs Redis 7.0 or newer.",
            hint="Upgrade Redis; until then benches sharing it can reach each other's keys.",
        )


def _admin(admin: redis.Redis, *command: str) -> Any:
    try:
        return _run(admin, *command)
    except redis.ResponseError as exc:
        raise BenchJobsError(f"Redis refused {command[0]} {command[1]}: {exc}", hint=ADMIN_HINT) from exc


def _verify(url: str, username: str, password: str, own_key: str) -> None:
    """Log in as the new user: it must reach the bench's keys and be refused CONFIG."""
    user = _client(url, username=username, password=password)
    try:
        whoami = _text(_run(user, "ACL", "WHOAMI"))
        user.exists(own_key)
        try:
            user.config_get("maxmemory")
            refused = False
        except redis.exceptions.NoPermissionError:
            refused = True
    except redis.ResponseError as exc:
        raise BenchJobsError(f"Logging in as {username} failed: {exc}", hint="Run create-rq-users again.") from exc
    finally:
        user.close()
    if whoami != username or not refused:
        raise BenchJobsError(
            f"The ACL user {username} does not behave as set (logged in as {whoami}, CONFIG refused: {refused}).",
            hint="Look for another tool that rewrites ACL users on this Redis (ACL LOG names refused commands).",
        )


def _needs_no_password(admin: redis.Redis, user: str) -> bool:
    try:
        found: Any = admin.acl_getuser(user)
    except redis.ResponseError:
        return False
    return bool(found) and {"on", "nopass"} <= {_text(flag) for flag in found.get("flags", [])}


def _run(conn: redis.Redis, *command: str) -> Any:
    return conn.execute_command(*command)  # type: ignore[no-untyped-call]


def _url_user(url: str) -> str | None:
    return redis.connection.parse_url(url).get("username") or None  # type: ignore[no-untyped-call]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
