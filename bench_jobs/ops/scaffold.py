"""Creating a bench (with a demo app and site) and new sites."""

from __future__ import annotations

from pathlib import Path

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

_COMMON_CONFIG = """# Bench-wide settings for bench-jobs (see the README's configuration reference).
redis_queue = "{redis_url}"
bench_id = "{bench_id}"
# Apps every site gets unless its own site_config.toml lists others.
apps = ["{app}"]
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
timezone = "{timezone}"
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


def create_bench(
    root: Path, site: str = DEMO_SITE, redis_url: str = DEFAULT_REDIS_URL, timezone: str | None = None
) -> Bench:
    """A new bench at `root` with one site (scheduler enabled), the demo app in `apps/` and a Procfile."""
    validate_site_name(site)
    if timezone is not None and not zone_exists(timezone):
        raise ConfigError(f"Unknown time zone {timezone!r}.", hint='Use an IANA name such as "Europe/Berlin" or "UTC".')
    validate_redis_url(redis_url, "--redis-url")
    bench = Bench(root.resolve())
    if bench.common_config_path.exists():
        raise ConfigError(f"{bench.root} is already a bench.", hint="Add a site with: bench-jobs new-site NAME")
    for folder in (bench.sites_dir, bench.apps_dir / DEMO_APP, bench.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    app_dir = bench.apps_dir / DEMO_APP
    write_atomic(app_dir / "__init__.py", '"""bench-jobs demo app."""\n')
    write_atomic(app_dir / "hooks.py", _DEMO_HOOKS)
    write_atomic(app_dir / "tasks.py", _DEMO_TASKS)
    write_atomic(
        bench.common_config_path,
        _COMMON_CONFIG.format(redis_url=redis_url, bench_id=bench_slug(bench.root), app=DEMO_APP),
        mode=0o600 if url_has_password(redis_url) else 0o644,
    )
    create_site(bench, site, timezone=timezone, scheduler_enabled=True)
    write_atomic(bench.sites_dir / CURRENT_SITE_FILE, site + "\n")
    write_procfile(bench)
    return bench


def create_site(
    bench: Bench, site: str, timezone: str | None = None, apps: list[str] | None = None, scheduler_enabled: bool = False
) -> Path:
    """A new site folder with its site_config.toml; refuses to touch an existing site."""
    validate_site_name(site)
    if timezone is not None and not zone_exists(timezone):
        raise ConfigError(f"Unknown time zone {timezone!r}.", hint='Use an IANA name such as "Europe/Berlin" or "UTC".')
    folder = bench.sites_dir / site
    if (folder / SITE_CONFIG).exists():
        raise ConfigError(f"Site {site!r} already exists.", hint=f"Its config is {folder / SITE_CONFIG}.")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SITE_CONFIG
    write_atomic(
        path,
        _SITE_CONFIG.format(site=site, timezone=timezone or local_timezone(), enabled=str(scheduler_enabled).lower()),
    )
    if apps is not None:
        update_config_file(path, {"apps": apps})
    return path
