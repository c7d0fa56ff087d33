"""Who may use the dashboard: the bind address and its token, and the CSRF token every action carries.

Pure functions over the bench's config: the app (app.py) calls them per request, the CLI before it binds.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from ..core.bench import Bench
from ..core.config import read_toml
from ..core.config_writer import update_config_file
from ..errors import ConfigError

TOKEN_KEY = "dashboard_token"
LOCAL_NAMES = ("localhost",)
TOKEN_COOKIE = "bj_session"
CSRF_COOKIE = "bj_csrf"
CSRF_FIELD = "csrf"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class Access:
    """The token the dashboard requires (None: none, which only a loopback bind allows), and whether it was
    generated just now (the only time it is ever printed)."""

    token: str | None
    generated: bool = False


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`: addresses no other machine can reach."""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def configured_token(bench: Bench) -> str | None:
    """`dashboard_token` from common_site_config.toml; ConfigError when it is set but too short to guess at."""
    value = read_toml(bench.common_config_path).get(TOKEN_KEY)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{bench.common_config_path}: key {TOKEN_KEY!r} must be a string of at least {MIN_TOKEN_CHARS} characters.",
            hint="Remove it and run `bench-jobs dashboard --new-token` to generate one.",
        )
    return value


def resolve_access(bench: Bench, host: str, new_token: bool) -> Access:
    """The token for a dashboard bound to `host`. A configured token is always required; `new_token`
    generates one and saves it (the config file loses its world-read bit). A bind that other machines can
    reach without any token is a ConfigError (exit 2): its actions would be anyone's."""
    if new_token:
        generated = secrets.token_urlsafe(24)
        path = bench.common_config_path
        update_config_file(path, {TOKEN_KEY: generated}, private=True)
        return Access(generated, generated=True)
    token = configured_token(bench)
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"The dashboard would listen on {host} without a token: anyone who reaches it could requeue, "
            "delete and purge jobs.",
            hint=f"Pass --new-token to generate one (printed once, saved as {TOKEN_KEY} in "
            "sites/common_site_config.toml), set that key yourself, or bind 127.0.0.1.",
        )
    return Access(token)


def session_value(token: str) -> str:
    """What the session cookie holds: a digest of the token, so the cookie never carries the token itself."""
    return hashlib.sha256(b"bench-jobs-dashboard:" + token.encode()).hexdigest()


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time equality of two non-empty secrets."""
    return bool(given) and bool(expected) and hmac.compare_digest(str(given), str(expected))


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)
