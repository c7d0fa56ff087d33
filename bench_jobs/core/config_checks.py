"""Validating config files: each known key's check (the allowed values named in the error), the keys that
only the common config may hold, and warnings for keys that look like a misspelt known key."""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError
from .urls import redis_url_problem

# Frappe's keys for a queue Redis behind Sentinel (frappe/utils/background_jobs.py reads the same names).
SENTINEL_KEYS = (
    "redis_queue_sentinel_enabled",
    "redis_queue_sentinels",
    "redis_queue_master_service",
    "redis_queue_sentinel_username",
    "redis_queue_sentinel_password",
    "redis_queue_master_username",
    "redis_queue_master_password",
)
COMMON_ONLY_KEYS = (
    "retry_intervals",
    "redis_queue",
    "use_rq_auth",
    "rq_username",
    "rq_password",
    "bench_id",
    "scheduler_tick_interval",
    "scheduler_interval",
    "workers",
    "job_result_ttl",
    "job_failure_ttl",
    "pause_scheduler",
    "doctor_failed_jobs",
    "stuck_after_skips",
    "max_jobs_per_horse",
    "max_horse_memory_mb",
    "fork_per_job",
    *SENTINEL_KEYS,
    "redis_queue_wait_replicas",
    "redis_queue_wait_timeout_ms",
)
DOCTOR_LEVELS = ("warning", "error")  # doctor_failed_jobs: what kept failed jobs make of doctor's check

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")  # bench ids and queue names
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class Checker:
    """Validates one file's keys, naming the file and the key in every error."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, problem: str, allowed: str) -> ConfigError:
        return ConfigError(f"{self.path}: key {key!r} {problem}.", hint=f"Allowed: {allowed}.")

    def check(self, key: str, value: Any) -> None:
        checker = _KEY_CHECKS.get(key)
        if checker:
            checker(self, key, value)


def _check_bool(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise c.fail(key, f"is {value!r}", "true or false")


def _check_doctor_level(c: Checker, key: str, value: Any) -> None:
    if value not in DOCTOR_LEVELS:
        raise c.fail(key, f"is {value!r}", " or ".join(f'"{level}"' for level in DOCTOR_LEVELS))


def check_redis_url(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, str):  # never its repr: a list or table may still hold the password
        raise c.fail(key, f"is a {type(value).__name__}, not a string", "a redis://, rediss:// or unix:// URL")
    problem = redis_url_problem(value)
    if problem is not None:
        raise c.fail(key, *problem)


def validate_redis_url(url: str, source: str) -> None:
    """ConfigError naming `source` unless `url` is a Redis URL bench-jobs can use."""
    check_redis_url(Checker(Path(source), {}), "redis_queue", url)


def validate_setting(path: Path, key: str, value: Any) -> None:
    """ConfigError naming `path` and `key` unless `value` passes the rule a loaded file's `key` must pass."""
    Checker(path, {key: value}).check(key, value)


def _check_acl_name(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise c.fail(key, f"is {value!r}", "a Redis ACL user name: no spaces (create-rq-users writes it)")


def _check_rq_password(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, str) or not value:  # never its repr: it is a password
        raise c.fail(key, "is not a non-empty string", "the ACL user's password (create-rq-users writes it)")


def _check_intervals(c: Checker, key: str, value: Any) -> None:
    ok = isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok or min(value) < 0:
        raise c.fail(key, f"is {value!r}", "a non-empty list of seconds, e.g. [10, 60, 300]")


def _check_slug(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise c.fail(key, f"is {value!r}", "lower-case letters, digits, '_' and '-'")


def _check_apps(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(a, str) and _DOTTED.fullmatch(a) for a in value):
        raise c.fail(key, f"is {value!r}", 'a list of importable package names, e.g. ["my_app"]')


def _check_timezone(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, str) or not zone_exists(value):
        raise c.fail(key, f"is {value!r}, not a known time zone", 'an IANA zone name such as "Europe/Berlin" or "UTC"')


def _check_tick(c: Checker, key: str, value: Any) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    if not ok or (value < 60 and 60 % value) or (value >= 60 and value % 60):
        raise c.fail(
            key, f"is {value!r}", "seconds that divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) or a multiple of 60"
        )


def _check_scheduler_interval(c: Checker, key: str, value: Any) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    if not ok or (value < 60 and 60 % value):
        raise c.fail(
            key,
            f"is {value!r}",
            "whole seconds: 60 or more (`all` runs as the cron */N minutes, N = scheduler_interval // 60, as in "
            "Frappe), or below 60 a divisor of 60 (every that many seconds)",
        )


def _check_positive(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise c.fail(key, f"is {value!r}", "a whole number of 1 or more")


def _check_ttl(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < -1:
        raise c.fail(key, f"is {value!r}", "whole seconds, or -1 to keep forever")


def _check_workers(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise c.fail(key, f"is {value!r}", "a table of queues, e.g. [workers.long] timeout = 1500")
    for queue, settings in value.items():
        name = f"{key}.{queue}"
        if not _SLUG.fullmatch(queue):
            raise c.fail(name, "is not a valid queue name", "lower-case letters, digits, '_' and '-'")
        if not isinstance(settings, dict):
            raise c.fail(name, f"is {settings!r}", "a table with timeout and background_workers")
        for sub, sub_value in settings.items():
            positive = isinstance(sub_value, int) and not isinstance(sub_value, bool) and sub_value > 0
            if sub not in ("timeout", "background_workers"):
                raise c.fail(f"{name}.{sub}", "is not a queue setting", "timeout, background_workers")
            if not positive:
                raise c.fail(f"{name}.{sub}", f"is {sub_value!r}", "a whole number greater than 0")


def _check_sentinels(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and sentinel_address(v) for v in value):
        raise c.fail(key, f"is {value!r}", 'a non-empty list of "host:port" strings, e.g. ["10.0.0.5:26379"]')


def sentinel_address(text: str) -> tuple[str, int] | None:
    """("host", port) of a "host:port" sentinel entry ("[::1]:26379" for IPv6), None when it is not one."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(ch.isspace() for ch in host):
        return None
    return host, int(port)


def _check_name(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise c.fail(key, f"is {value!r}", "a non-empty string")


def _check_secret(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, str):  # never its repr: it may be the password itself
        raise c.fail(key, f"is a {type(value).__name__}, not a string", "a string")


def _check_count(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise c.fail(key, f"is {value!r}", "a whole number of 0 or more (0: do not wait for replicas)")


MAX_WAIT_TIMEOUT_MS = 9000  # below connection.SOCKET_TIMEOUT_S, so a slow WAIT is never taken for a lost reply


def _check_wait_timeout(c: Checker, key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_WAIT_TIMEOUT_MS:
        raise c.fail(key, f"is {value!r}", f"milliseconds from 1 to {MAX_WAIT_TIMEOUT_MS}")


def sentinel_problem(path: Path, data: Mapping[str, Any]) -> ConfigError | None:
    """What is missing for Sentinel when `redis_queue_sentinel_enabled` is true (each key alone passed)."""
    if not data.get("redis_queue_sentinel_enabled"):
        return None
    missing = [key for key in ("redis_queue_sentinels", "redis_queue_master_service") if not data.get(key)]
    if not missing:
        return None
    verb = "is" if len(missing) == 1 else "are"
    return ConfigError(
        f"{path}: redis_queue_sentinel_enabled is true but {' and '.join(missing)} {verb} not set.",
        hint='Set redis_queue_sentinels = ["host:port", ...] (the Sentinels) and redis_queue_master_service = '
        '"mymaster" (the name they monitor the master under), or set redis_queue_sentinel_enabled = false.',
    )


_KEY_CHECKS = {
    "redis_queue": check_redis_url,
    "use_rq_auth": _check_bool,
    "rq_username": _check_acl_name,
    "rq_password": _check_rq_password,
    "bench_id": _check_slug,
    "apps": _check_apps,
    "timezone": _check_timezone,
    "scheduler_enabled": _check_bool,
    "maintenance_mode": _check_bool,
    "scheduler_tick_interval": _check_tick,
    "scheduler_interval": _check_scheduler_interval,
    "workers": _check_workers,
    "job_result_ttl": _check_ttl,
    "job_failure_ttl": _check_ttl,
    "retry_intervals": _check_intervals,
    "pause_scheduler": _check_bool,
    "doctor_failed_jobs": _check_doctor_level,
    "stuck_after_skips": _check_positive,
    "max_concurrent_jobs": _check_positive,
    "queue_weight": _check_positive,
    "max_jobs_per_horse": _check_positive,
    "max_horse_memory_mb": _check_positive,
    "fork_per_job": _check_bool,
    "redis_queue_sentinel_enabled": _check_bool,
    "redis_queue_sentinels": _check_sentinels,
    "redis_queue_master_service": _check_name,
    "redis_queue_sentinel_username": _check_secret,
    "redis_queue_sentinel_password": _check_secret,
    "redis_queue_master_username": _check_secret,
    "redis_queue_master_password": _check_secret,
    "redis_queue_wait_replicas": _check_count,
    "redis_queue_wait_timeout_ms": _check_wait_timeout,
}
KNOWN_KEYS = frozenset(_KEY_CHECKS) | frozenset(COMMON_ONLY_KEYS)
TYPO_CUTOFF = 0.8  # difflib ratio: close enough to a known key to be a typo rather than a custom key
# Keys Frappe's site configs hold (bench-jobs reads only some): never taken for a typo of a bench-jobs key,
# whatever it grows (`db_password` is 0.82 from `rq_password`).
FRAPPE_KEYS = frozenset(
    {
        "admin_password", "allow_tests", "db_host", "db_name", "db_password", "db_port", "db_socket", "db_type",
        "db_user", "developer_mode", "encryption_key", "file_watcher_port", "host_name", "live_reload",
        "maintenance_mode", "mute_emails", "redis_cache", "redis_socketio", "root_login", "root_password",
        "serve_default_site", "socketio_port", "webserver_port", "default_site", "server_script_enabled",
    }
)  # fmt: skip

log = logging.getLogger("bench_jobs.config")
_warned_typos: set[tuple[Path, str]] = set()


def likely_typos(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, the known key it probably means) for each unknown top-level key close to a known one. Custom keys
    are allowed, so a misspelt one would otherwise be silently ignored."""
    typos = []
    for key in data:
        if key not in KNOWN_KEYS and key not in FRAPPE_KEYS:
            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=TYPO_CUTOFF)
            if close:
                typos.append((key, close[0]))
    return typos


def typo_message(path: Path, key: str, meant: str) -> str:
    return f"{path}: unknown key {key!r} is ignored; did you mean {meant!r}?"


def _warn_typos(path: Path, data: Mapping[str, Any]) -> None:
    """Log one warning per likely typo, once per process (the caches re-validate a file when it changes)."""
    for key, meant in likely_typos(data):
        if (path, key) not in _warned_typos:
            _warned_typos.add((path, key))
            log.warning("Warning: %s", typo_message(path, key, meant))


def validated(path: Path, data: Mapping[str, Any], site_level: bool) -> Mapping[str, Any]:
    checker = Checker(path, data)
    for key, value in data.items():
        if site_level and key in COMMON_ONLY_KEYS:
            raise ConfigError(
                f"{path}: key {key!r} is bench-wide and cannot be set per site.",
                hint="Move it to sites/common_site_config.toml.",
            )
        checker.check(key, value)
    _warn_typos(path, data)
    return data
