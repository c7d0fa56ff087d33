"""Creating a bench (with a demo app and site) and new sites."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import tomlkit

from ..core.bench import CURRENT_SITE_FILE, SITE_CONFIG, Bench, validate_site_name
from ..core.config import (
    DEFAULT_REDIS_URL,
    bench_slug,
    local_timezone,
    url_has_password,
    validate_redis_url,
    zone_exists,
)
from ..core.config_writer import update_config_file, write_atomic
from ..errors import ConfigError
from .process_configs import write_procfile

DEMO_APP = "demo_app"
DEMO_SITE = "site1.local"

_COMMON_CONFIG = """# Bench-wide settings for bench-jobs (see docs/configuration.md in bench-jobs).
redis_queue = {redis_url}
bench_id = {bench_id}
# Apps every site gets unless its own site_config.toml lists others.
apps = {apps}
# Seconds between scheduler ticks (default 60); short here so the demo shows scheduled jobs quickly.
scheduler_tick_interval = 10

# Per-queue default job timeout (seconds) and processes in generated supervisor/systemd config.
[workers.short]
timeout = 300

[workers.default]
timeout = 300

[workers.long]
timeout = 1500
"""

_SITE_CONFIG = """# Settings of site {site}; keys here override sites/common_site_config.toml.
timezone = {timezone}
scheduler_enabled = {enabled}
"""

_DEMO_HOOKS = '''"""Hooks of the demo app: what bench-jobs schedules and runs around every job."""

scheduler_events = {
    "all": ["demo_app.tasks.heartbeat"],
    "hourly": ["demo_app.tasks.hourly_report"],
    "daily": ["demo_app.tasks.cleanup"],
    "cron": {
        "*/2 * * * *": ["demo_app.tasks.sync_inbox"],
    },
    "daily_long": [{"method": "demo_app.tasks.rebuild_index", "timeout": 1200}],
}

before_job = ["demo_app.tasks.open_connection"]
after_job = ["demo_app.tasks.close_connection"]

doc_types = {"Note": "demo_app.tasks.Note"}
'''

_DEMO_TASKS = '''"""Jobs of the demo app. Each logs to logs/demo.log and logs/<site>/demo.log."""

from __future__ import annotations

import time

import bench_jobs

log = bench_jobs.logger("demo")


def open_connection() -> None:
    log.info("before_job: open a database connection")


def close_connection() -> None:
    log.info("after_job: close the database connection")


def heartbeat() -> None:
    log.info("scheduler heartbeat job ran")


def hourly_report() -> None:
    log.info("hourly report built")


def cleanup() -> None:
    log.info("daily cleanup done")


def sync_inbox() -> None:
    log.info("inbox synced")


def rebuild_index() -> None:
    log.info("search index rebuilt")


def greet(name: str = "world") -> dict[str, str]:
    """Try it: bench-jobs execute demo_app.tasks.greet --kwargs "{'name': 'Ada'}" """
    site = bench_jobs.current_site() or "-"
    log.info("greeted %s", name)
    return {"greeting": f"Hello, {name}!", "site": site}


def send_report(record_id: str, delay_s: float = 0.0) -> str:
    """An on-demand job: bench_jobs.enqueue("demo_app.tasks.send_report", record_id="TEST-001")"""
    time.sleep(delay_s)
    log.info("report for %s sent", record_id)
    return f"sent {record_id}"


class Note:
    """A document type: enqueue_doc("Note", "NOTE-1", "publish") loads it by name and calls publish()."""

    def __init__(self, name: str) -> None:
        self.name = name

    def publish(self) -> str:
        log.info("note %s published", self.name)
        return f"published {self.name}"
'''


def _toml(value: Any) -> str:
    """`value` as a TOML value, escaped by tomlkit (a password may hold '"' or '\\')."""
    return str(tomlkit.item(value).as_string())


def create_bench(
    root: Path, site: str = DEMO_SITE, redis_url: str = DEFAULT_REDIS_URL, timezone: str | None = None
) -> Bench:
    """A new bench at `root` with one site (scheduler enabled), the demo app in `apps/` and a Procfile.

    Everything is checked before anything is written, and a failure while writing removes what this call
    created, so a failed init never leaves a half-made bench that later commands would take for a bench."""
    validate_redis_url(redis_url, "--redis-url")
    site_text = _site_config_text(site, timezone, scheduler_enabled=True)
    bench = Bench(root.resolve())
    if bench.common_config_path.exists():
        raise ConfigError(f"{bench.root} is already a bench.", hint="Add a site with: bench-jobs new-site NAME")
    common_text = _COMMON_CONFIG.format(
        redis_url=_toml(redis_url), bench_id=_toml(bench_slug(bench.root)), apps=_toml([DEMO_APP])
    )
    app_dir = bench.apps_dir / DEMO_APP
    files = {
        app_dir / "__init__.py": '"""bench-jobs demo app."""\n',
        app_dir / "hooks.py": _DEMO_HOOKS,
        app_dir / "tasks.py": _DEMO_TASKS,
        bench.site_config_path(site): site_text,
        bench.sites_dir / CURRENT_SITE_FILE: site + "\n",
        bench.common_config_path: common_text,  # last: this file is what makes the folder a bench
    }
    created: list[Path] = []
    try:
        for folder in (bench.sites_dir / site, app_dir, bench.logs_dir):
            _make_folders(folder, created)
        for path, text in files.items():
            private = path == bench.common_config_path and url_has_password(redis_url)
            _write_new(path, text, created, mode=0o600 if private else 0o644)
        if not (bench.root / "Procfile").exists():
            created.append(bench.root / "Procfile")
        write_procfile(bench)
    except BaseException:
        _remove(created)
        raise
    return bench


def _make_folders(folder: Path, created: list[Path]) -> None:
    """`mkdir -p folder`, recording in `created` each folder that did not exist, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _write_new(path: Path, text: str, created: list[Path], mode: int) -> None:
    if not path.exists():
        created.append(path)
    write_atomic(path, text, mode=mode)


def _remove(created: list[Path]) -> None:
    """Undo a failed create_bench: remove what it created, innermost first."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()


def _site_config_text(site: str, timezone: str | None, scheduler_enabled: bool) -> str:
    """A new site's site_config.toml, after checking the site name and the time zone."""
    validate_site_name(site)
    if timezone is not None and not zone_exists(timezone):
        raise ConfigError(f"Unknown time zone {timezone!r}.", hint='Use an IANA name such as "Europe/Berlin" or "UTC".')
    return _SITE_CONFIG.format(
        site=site, timezone=_toml(timezone or local_timezone()), enabled=_toml(scheduler_enabled)
    )


def create_site(
    bench: Bench, site: str, timezone: str | None = None, apps: list[str] | None = None, scheduler_enabled: bool = False
) -> Path:
    """A new site folder with its site_config.toml; refuses to touch an existing site."""
    text = _site_config_text(site, timezone, scheduler_enabled)
    folder = bench.sites_dir / site
    if (folder / SITE_CONFIG).exists():
        raise ConfigError(f"Site {site!r} already exists.", hint=f"Its config is {folder / SITE_CONFIG}.")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SITE_CONFIG
    write_atomic(path, text)
    if apps is not None:
        update_config_file(path, {"apps": apps})
    return path
