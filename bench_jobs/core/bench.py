"""Finding the bench on disk and the sites a command acts on."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

BENCH_ENV = "BENCH_JOBS_BENCH"
SITE_ENV = "BENCH_JOBS_SITE"
ALL_SITES = "all"
COMMON_CONFIG = "common_site_config.toml"
SITE_CONFIG = "site_config.toml"
CURRENT_SITE_FILE = "currentsite.txt"

_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Bench:
    """A bench folder: `sites/` with one folder per site, optional `apps/` and `logs/`."""

    root: Path

    @property
    def sites_dir(self) -> Path:
        return self.root / "sites"

    @property
    def apps_dir(self) -> Path:
        return self.root / "apps"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def common_config_path(self) -> Path:
        return self.sites_dir / COMMON_CONFIG

    def site_config_path(self, site: str) -> Path:
        return self.sites_dir / validate_site_name(site) / SITE_CONFIG

    def site_names(self) -> list[str]:
        """Every site of the bench (a folder under `sites/` holding `site_config.toml`), in name order."""
        if not self.sites_dir.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.sites_dir.iterdir()
            if _SITE_NAME.fullmatch(entry.name) and (entry / SITE_CONFIG).is_file()
        )

    def has_site(self, site: str) -> bool:
        return self.site_config_path(site).is_file()

    def default_site(self, env: Mapping[str, str] | None = None) -> str | None:
        """`$BENCH_JOBS_SITE`, else the name in `sites/currentsite.txt`, else None."""
        env = os.environ if env is None else env
        if SITE_ENV in env:
            return validate_site_selector(env[SITE_ENV], f"${SITE_ENV}")
        current = self.sites_dir / CURRENT_SITE_FILE
        if current.is_file():
            name = current.read_text(encoding="utf-8").strip()
            return name or None
        return None

    def resolve_sites(self, selector: str | None, env: Mapping[str, str] | None = None) -> list[str]:
        """The sites a per-site command acts on: `--site NAME`, `--site all`, or the default site."""
        name = self.default_site(env) if selector is None else validate_site_selector(selector, "--site")
        if not name:
            raise ConfigError(
                "No site selected.",
                hint=f"Pass --site NAME (or --site all), set ${SITE_ENV}, or write the name to "
                f"sites/{CURRENT_SITE_FILE}.",
            )
        if name == ALL_SITES:
            sites = self.site_names()
            if not sites:
                raise ConfigError(
                    f"The bench at {self.root} has no sites.", hint="Create one: bench-jobs new-site NAME"
                )
            return sites
        validate_site_name(name)
        if not self.has_site(name):
            if self.site_config_path(name).exists():
                raise ConfigError(
                    f"{self.site_config_path(name)} is not a file.",
                    hint="Remove it (a folder, say) and write the site's settings to that path as a TOML file.",
                )
            known = ", ".join(self.site_names()) or "none"
            raise ConfigError(f"Unknown site {name!r}.", hint=f"Sites of this bench: {known}.")
        return [name]


def validate_site_selector(value: str, source: str) -> str:
    """`value` stripped, or ConfigError (exit 2) when it is empty: an unset shell variable (`--site "$SITE"`)
    must never quietly mean the default site, since a command like `purge-jobs --yes` would then act on it."""
    if not value.strip():
        unset = f"unset {source[1:]}" if source.startswith("$") else f"leave out {source}"
        raise ConfigError(
            f"{source} is empty.",
            hint=f"Give a site name or 'all'; to use the default site (sites/{CURRENT_SITE_FILE}), {unset}.",
        )
    return value.strip()


MAX_SITE_NAME = 253  # a DNS name's limit, and well under a file name's (255 bytes)


def validate_site_name(name: str) -> str:
    """Return `name` if it is a safe site name, else raise ConfigError (no path separators, no `..`, no name
    longer than a DNS name, which would also be too long for its folder)."""
    if len(name) > MAX_SITE_NAME:
        raise ConfigError(
            f"Invalid site name {name[:40]!r}... ({len(name)} characters).",
            hint=f"A site name has at most {MAX_SITE_NAME} characters (a DNS name's limit).",
        )
    if not _SITE_NAME.fullmatch(name) or ".." in name or name == ALL_SITES:
        raise ConfigError(
            f"Invalid site name {name!r}.",
            hint="A site name is letters, digits, '.', '_' and '-', starts with a letter or digit, "
            "has no '..' and is not 'all'.",
        )
    return name


def find_bench(
    explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Bench:
    """`--bench PATH`, else `$BENCH_JOBS_BENCH`, else the nearest folder at or above `cwd` with the
    common site config."""
    env = os.environ if env is None else env
    given = explicit or env.get(BENCH_ENV)
    if given:
        root = Path(given).expanduser().resolve()
        if not (root / "sites" / COMMON_CONFIG).is_file():
            raise ConfigError(
                f"{root} is not a bench: it has no sites/{COMMON_CONFIG}.",
                hint="Create one with: bench-jobs init DIR",
            )
        return Bench(root)
    start = (cwd or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "sites" / COMMON_CONFIG).is_file():
            return Bench(folder)
    raise ConfigError(
        f"No bench found at or above {start}.",
        hint=f"Run inside a bench, pass --bench PATH or set ${BENCH_ENV}; create one with: bench-jobs init DIR",
    )


_apps_dirs_on_path: set[Path] = set()


def add_bench_apps_to_path(apps_dir: Path) -> None:
    """Make the bench's `apps/` folder importable: packages in it, and Frappe-style `apps/x/x/` layouts.
    Looked at once per process and folder (it runs for every job)."""
    if apps_dir in _apps_dirs_on_path and str(apps_dir) in sys.path:
        return
    _apps_dirs_on_path.add(apps_dir)
    if not apps_dir.is_dir():
        return
    folders = [apps_dir] + [
        child
        for child in sorted(apps_dir.iterdir())
        if child.is_dir() and (child / child.name / "__init__.py").is_file()
    ]
    for folder in reversed(folders):
        entry = str(folder)
        if entry not in sys.path:
            sys.path.insert(0, entry)
