"""Site settings: built-in defaults < common_site_config.toml < site_config.toml (< env for Redis),
typed and validated; and the safe writer for site_config.toml."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .bench import Bench
from .config_checks import COMMON_ONLY_KEYS as COMMON_ONLY_KEYS
from .config_checks import DOCTOR_LEVELS, Checker, check_redis_url, sentinel_address, sentinel_problem, validated
from .config_checks import KNOWN_KEYS as KNOWN_KEYS  # re-exported, with the four below
from .config_checks import likely_typos as likely_typos
from .config_checks import typo_message as typo_message
from .config_checks import validate_redis_url as validate_redis_url
from .config_checks import validate_setting as validate_setting
from .config_checks import zone_exists as zone_exists
from .urls import redact_url as redact_url  # re-exported: where the modules above import it from
from .urls import url_has_password as url_has_password

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REDIS_URL_ENV = "BENCH_JOBS_REDIS_QUEUE"
DEFAULT_REDIS_URL = "redis://127.0.0.1:11311"
DEFAULT_TICK_INTERVAL_S = 60
DEFAULT_SCHEDULER_INTERVAL_S = 240  # Frappe's: `all` jobs every 4 minutes
DEFAULT_STUCK_AFTER_SKIPS = 3  # slots skipped in a row (previous run never finished) before doctor warns
DEFAULT_RESULT_TTL_S = 600
DEFAULT_FAILURE_TTL_S = 7 * 24 * 3600
DEFAULT_BACKGROUND_WORKERS = 1
DEFAULT_MAX_JOBS_PER_HORSE = 1000  # a worker's work-horse runs this many jobs, then a fresh one is forked
DEFAULT_MAX_HORSE_MEMORY_MB = 512  # ... or fewer, once its resident memory grows past this
DEFAULT_WAIT_TIMEOUT_MS = 2000  # redis_queue_wait_timeout_ms: how long a write waits for its replicas
BUILTIN_QUEUE_TIMEOUTS_S = {"short": 300, "default": 300, "long": 1500}


@dataclass(frozen=True)
class QueueSettings:
    name: str
    timeout_s: int
    background_workers: int


@dataclass(frozen=True)
class SentinelSettings:
    """Where the Sentinels are and the master's service name (Frappe's redis_queue_sentinel_* keys)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    master_username: str | None = None
    master_password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """How the master is named in messages and as its client's cache key: never a password."""
        return f"Sentinel service {self.service!r} via {','.join(f'{h}:{p}' for h, p in self.sentinels)}"


def _sentinel_settings(common: Mapping[str, Any]) -> SentinelSettings | None:
    if not common.get("redis_queue_sentinel_enabled"):
        return None
    return SentinelSettings(
        sentinels=tuple(sentinel_address(text) or ("", 0) for text in common["redis_queue_sentinels"]),
        service=common["redis_queue_master_service"].strip(),
        sentinel_username=common.get("redis_queue_sentinel_username") or None,
        sentinel_password=common.get("redis_queue_sentinel_password") or None,
        master_username=common.get("redis_queue_master_username") or None,
        master_password=common.get("redis_queue_master_password") or None,
    )


@dataclass(frozen=True)
class BenchSettings:
    """Bench-wide settings, from common_site_config.toml and the environment."""

    redis_url: str
    bench_id: str
    tick_interval_s: int
    queues: dict[str, QueueSettings]
    result_ttl_s: int
    failure_ttl_s: int
    common: dict[str, Any] = field(repr=False)
    scheduler_interval_s: int = DEFAULT_SCHEDULER_INTERVAL_S
    scheduler_paused: bool = False  # Frappe's pause_scheduler: ticks go on, nothing fires
    doctor_failed_jobs: str = DOCTOR_LEVELS[0]  # failed jobs warn by default: they are kept for days
    stuck_after_skips: int = DEFAULT_STUCK_AFTER_SKIPS
    max_jobs_per_horse: int = DEFAULT_MAX_JOBS_PER_HORSE
    max_horse_memory_mb: int = DEFAULT_MAX_HORSE_MEMORY_MB
    fork_per_job: bool = False  # a fresh work-horse for every job, as RQ's worker does
    sentinel: SentinelSettings | None = None  # the master is found through Sentinel; redis_queue gives its db only
    wait_replicas: int = 0  # writes that acknowledge (enqueue, slot claims, outcomes) wait for this many replicas
    wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS

    def queue(self, name: str) -> QueueSettings:
        """The named queue, or a ConfigError listing the known ones."""
        if name not in self.queues:
            raise ConfigError(
                f"Unknown queue {name!r}.",
                hint=f"Known queues: {', '.join(self.queues)}. Declare a custom one as "
                f"[workers.{name}] in common_site_config.toml.",
            )
        return self.queues[name]


@dataclass(frozen=True)
class SiteSettings:
    """One site's merged settings; `values` holds every key (custom ones too) after merging."""

    name: str
    apps: tuple[str, ...]
    timezone: str
    scheduler_enabled: bool
    maintenance_mode: bool
    bench: BenchSettings
    values: dict[str, Any] = field(repr=False)
    max_concurrent_jobs: int | None = None  # the site's jobs running at once across the bench; None: no cap
    queue_weight: int = 1  # turns the site gets in a queue for another site's one


Stamp = tuple[int, int, int]
_toml_cache: dict[Path, tuple[Stamp, dict[str, Any]]] = {}


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file (an absent file is empty); errors name the file and the line."""
    return _read_toml_stamped(path)[1]


def _read_toml_stamped(path: Path) -> tuple[Stamp, dict[str, Any]]:
    """The parsed file and its (mtime, size, inode) stamp; the file is re-parsed only when it changed."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return (0, 0, 0), {}
    stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    cached = _toml_cache.get(path)
    if cached and cached[0] == stamp:
        return cached
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc).replace("(at end of document)", f"(at line {text.count(chr(10)) + 1}, end of file)")
        raise ConfigError(f"{path}: malformed TOML: {reason}", hint="Fix the line named above.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    _toml_cache[path] = (stamp, data)
    return stamp, data


def local_timezone(env: Mapping[str, str] | None = None) -> str:
    """The server's IANA zone: $TZ, /etc/timezone, the /etc/localtime link, else UTC."""
    env = os.environ if env is None else env
    candidates = [env.get("TZ", "").lstrip(":")]
    etc_timezone = Path("/etc/timezone")
    if etc_timezone.is_file():
        candidates.append(etc_timezone.read_text(encoding="utf-8").strip())
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if name and zone_exists(name):
            return name
    return "UTC"


def bench_slug(root: Path) -> str:
    """The bench folder's name as a bench_id: lower case, runs of other characters as '-'."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", root.name.lower()).strip("-_")
    return slug or "bench"


_bench_settings_cache: dict[tuple[Path, Stamp, str | None], BenchSettings] = {}


def load_bench_settings(bench: Bench, env: Mapping[str, str] | None = None) -> BenchSettings:
    """Bench-wide settings from common_site_config.toml, with $BENCH_JOBS_REDIS_QUEUE over redis_queue."""
    env = os.environ if env is None else env
    stamp, common = _read_toml_stamped(bench.common_config_path)
    env_url = env.get(REDIS_URL_ENV) or None
    cache_key = (bench.common_config_path, stamp, env_url)
    cached = _bench_settings_cache.get(cache_key)
    if cached is not None:
        return cached
    validated(bench.common_config_path, common, site_level=False)
    problem = sentinel_problem(bench.common_config_path, common)
    if problem is not None:
        raise problem
    if env_url:
        check_redis_url(Checker(Path(f"${REDIS_URL_ENV}"), {}), REDIS_URL_ENV, env_url)
    queues = {
        name: QueueSettings(name, timeout_s, DEFAULT_BACKGROUND_WORKERS)
        for name, timeout_s in BUILTIN_QUEUE_TIMEOUTS_S.items()
    }
    for name, table in common.get("workers", {}).items():
        base = queues.get(name, QueueSettings(name, BUILTIN_QUEUE_TIMEOUTS_S["default"], DEFAULT_BACKGROUND_WORKERS))
        queues[name] = QueueSettings(
            name,
            table.get("timeout", base.timeout_s),
            table.get("background_workers", base.background_workers),
        )
    settings = BenchSettings(
        redis_url=env_url or common.get("redis_queue", DEFAULT_REDIS_URL),
        bench_id=common.get("bench_id") or bench_slug(bench.root),
        tick_interval_s=common.get("scheduler_tick_interval", DEFAULT_TICK_INTERVAL_S),
        queues=queues,
        result_ttl_s=common.get("job_result_ttl", DEFAULT_RESULT_TTL_S),
        failure_ttl_s=common.get("job_failure_ttl", DEFAULT_FAILURE_TTL_S),
        common=dict(common),
        scheduler_interval_s=common.get("scheduler_interval", DEFAULT_SCHEDULER_INTERVAL_S),
        scheduler_paused=common.get("pause_scheduler", False),
        doctor_failed_jobs=common.get("doctor_failed_jobs", DOCTOR_LEVELS[0]),
        stuck_after_skips=common.get("stuck_after_skips", DEFAULT_STUCK_AFTER_SKIPS),
        max_jobs_per_horse=common.get("max_jobs_per_horse", DEFAULT_MAX_JOBS_PER_HORSE),
        max_horse_memory_mb=common.get("max_horse_memory_mb", DEFAULT_MAX_HORSE_MEMORY_MB),
        fork_per_job=common.get("fork_per_job", False),
        sentinel=_sentinel_settings(common),
        wait_replicas=common.get("redis_queue_wait_replicas", 0),
        wait_timeout_ms=common.get("redis_queue_wait_timeout_ms", DEFAULT_WAIT_TIMEOUT_MS),
    )
    _bench_settings_cache[cache_key] = settings
    return settings


_site_settings_cache: dict[tuple[Path, str], tuple[tuple[Stamp, BenchSettings], SiteSettings]] = {}


def load_site_settings(bench: Bench, site: str, env: Mapping[str, str] | None = None) -> SiteSettings:
    """One site's merged settings; files are re-parsed only when they changed on disk."""
    bench_settings = load_bench_settings(bench, env)
    path = bench.site_config_path(site)
    if not path.is_file():
        if path.exists():
            raise ConfigError(
                f"{path} is not a file.",
                hint="Remove it (a folder, say) and write the site's settings to that path as a TOML file.",
            )
        raise ConfigError(
            f"Unknown site {site!r}: {path} does not exist.",
            hint=f"Sites of this bench: {', '.join(bench.site_names()) or 'none'}.",
        )
    own_stamp, own = _read_toml_stamped(path)
    stamp = (own_stamp, bench_settings)
    cached = _site_settings_cache.get((bench.root, site))
    if cached and cached[0][0] == own_stamp and cached[0][1] is bench_settings:
        return cached[1]
    validated(path, own, site_level=True)
    merged = {**bench_settings.common, **own}
    settings = SiteSettings(
        name=site,
        apps=tuple(merged.get("apps", ())),
        timezone=merged.get("timezone") or local_timezone(env),
        scheduler_enabled=bool(own.get("scheduler_enabled", False)),
        maintenance_mode=bool(merged.get("maintenance_mode", False)),
        bench=bench_settings,
        values=merged,
        max_concurrent_jobs=merged.get("max_concurrent_jobs"),
        queue_weight=int(merged.get("queue_weight", 1)),
    )
    _site_settings_cache[(bench.root, site)] = (stamp, settings)
    return settings
