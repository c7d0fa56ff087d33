"""`set-config` and `show-config`: a value typed from the command line and checked by the same rules as a
loaded file, written with the style-preserving writer; and a site's settings with their sources, secrets
redacted."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .bench import Bench
from .config import (
    BUILTIN_QUEUE_TIMEOUTS_S,
    COMMON_ONLY_KEYS,
    DEFAULT_FAILURE_TTL_S,
    DEFAULT_MAX_HORSE_MEMORY_MB,
    DEFAULT_MAX_JOBS_PER_HORSE,
    DEFAULT_REDIS_URL,
    DEFAULT_RESULT_TTL_S,
    DEFAULT_SCHEDULER_INTERVAL_S,
    DEFAULT_TICK_INTERVAL_S,
    REDIS_URL_ENV,
    bench_slug,
    likely_typos,
    load_bench_settings,
    load_site_settings,
    local_timezone,
    read_toml,
    validate_setting,
)
from .config_writer import Change, update_config_file
from .urls import SECRET, redact_url, url_has_password

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECRET_KEY = re.compile(r"(password|secret|token|_key)$", re.IGNORECASE)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ConfigRow:
    """One setting as show-config prints it: `value` is already redacted; `source` is site, common,
    environment or default."""

    key: str
    value: Any
    source: str


def parse_value(text: str) -> Any:
    """A command-line value read as a TOML value (`true`, `30`, `["a", "b"]`, `"x"`), else as a plain string,
    so `set-config timezone Europe/Berlin` needs no quotes."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def holds_secret(key: str, value: Any) -> bool:
    """Whether a setting is a secret: a password-like key, or a Redis URL with a password."""
    if isinstance(value, dict):
        return any(holds_secret(k, v) for k, v in value.items())
    if not isinstance(value, str):
        return False
    return bool(SECRET_KEY.search(key)) or ("://" in value and url_has_password(value))


def redacted(key: str, value: Any) -> Any:
    """`value` safe to print: password-like keys as `***`, URLs with their password replaced."""
    if isinstance(value, dict):
        return {k: redacted(k, v) for k, v in value.items()}
    if isinstance(value, str) and SECRET_KEY.search(key):
        return SECRET
    if isinstance(value, str) and "://" in value and url_has_password(value):
        return redact_url(value)
    return value


def set_config(bench: Bench, key: str, value: Any, site: str | None) -> Change:
    """Set top-level `key` in the site's config (bench-wide when `site` is None), checked first by the rules
    the loader applies; a table value is merged into the table already there. A file that now holds a secret
    is made readable by its owner only."""
    if not _BARE_KEY.fullmatch(key):
        raise ConfigError(
            f"Cannot set {key!r}: set-config sets one top-level key.",
            hint="Give a table as an inline TOML value, e.g. set-config --global workers "
            "'{long = {timeout = 1500}}', or edit the file.",
        )
    if site is not None and key in COMMON_ONLY_KEYS:
        raise ConfigError(f"{key!r} is bench-wide and cannot be set per site.", hint="Pass --global.")
    path = config_file(bench, site)
    if site is not None and not path.is_file():
        load_site_settings(bench, site)  # raises the unknown-site error listing the sites
    current = read_toml(path).get(key)
    if isinstance(value, dict) and isinstance(current, dict):
        value = _merged(current, value)  # `workers '{long = {timeout = 900}}'` keeps the other queues
    validate_setting(path, key, value)
    typos = likely_typos({key: value})
    if typos:
        raise ConfigError(f"Unknown key {key!r}: did you mean {typos[0][1]!r}?", hint="Check the spelling.")
    (change,) = update_config_file(path, {key: value}, private=holds_secret(key, value))
    return change


def _merged(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """`new` over `old`, table by table."""
    merged = dict(old)
    for key, value in new.items():
        merged[key] = _merged(old[key], value) if isinstance(value, dict) and isinstance(old.get(key), dict) else value
    return merged


def _defaults(bench: Bench, timezone: str) -> dict[str, Any]:
    return {
        "timezone": timezone,
        "redis_queue": DEFAULT_REDIS_URL,
        "bench_id": bench_slug(bench.root),
        "apps": [],
        "scheduler_enabled": False,
        "maintenance_mode": False,
        "pause_scheduler": False,
        "scheduler_tick_interval": DEFAULT_TICK_INTERVAL_S,
        "scheduler_interval": DEFAULT_SCHEDULER_INTERVAL_S,
        "workers": {name: {"timeout": timeout_s} for name, timeout_s in BUILTIN_QUEUE_TIMEOUTS_S.items()},
        "job_result_ttl": DEFAULT_RESULT_TTL_S,
        "job_failure_ttl": DEFAULT_FAILURE_TTL_S,
        "max_jobs_per_horse": DEFAULT_MAX_JOBS_PER_HORSE,
        "max_horse_memory_mb": DEFAULT_MAX_HORSE_MEMORY_MB,
        "fork_per_job": False,
    }


def config_rows(bench: Bench, site: str | None, env: Mapping[str, str] | None = None) -> list[ConfigRow]:
    """The settings a site runs with (bench-wide ones only when `site` is None), each with where it comes
    from, in key order; validated as the loader does, secrets redacted."""
    env = os.environ if env is None else env
    load_bench_settings(bench, env)
    if site is not None:
        load_site_settings(bench, site, env)
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("default", _defaults(bench, local_timezone(env))),
        ("common", read_toml(bench.common_config_path)),
    ]
    if site is not None:
        layers.append(("site", read_toml(bench.site_config_path(site))))
    if env.get(REDIS_URL_ENV):
        layers.append((f"${REDIS_URL_ENV}", {"redis_queue": env[REDIS_URL_ENV]}))
    merged: dict[str, tuple[Any, str]] = {}
    for source, values in layers:
        for key, value in values.items():
            if site is None and key == "scheduler_enabled":
                continue  # per site only: the bench-wide view would suggest it enables sites
            merged[key] = (value, source)
    return [ConfigRow(key, redacted(key, value), source) for key, (value, source) in sorted(merged.items())]


def config_file(bench: Bench, site: str | None) -> Path:
    """The file set-config writes: the site's, or the bench-wide one."""
    return bench.common_config_path if site is None else bench.site_config_path(site)
