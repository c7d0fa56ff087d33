"""Who may use the dashboard: the bind address and its token, the sign-in session, and what makes an action
the dashboard's own (a same-origin request carrying a CSRF token tied to the process's secret).

Pure functions over the bench's config: the app (app.py) calls them per request, the CLI before it binds.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

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
SESSION_MAX_AGE_S = 12 * 3600  # a sign-in lasts a working day; the cookie and the server both expire it


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


def session_value(token: str, issued_s: int) -> str:
    """What the session cookie holds: when it was issued and an HMAC of that time keyed by a digest of the
    token, so the cookie never carries the token and the server itself refuses it after SESSION_MAX_AGE_S."""
    return f"{issued_s}.{_mac(_token_key(token), str(issued_s))}"


def valid_session(value: str | None, token: str, now_s: float) -> bool:
    """Whether a session cookie was issued by this dashboard's token within the last SESSION_MAX_AGE_S."""
    issued, _, _ = (value or "").partition(".")
    if not issued.isascii() or not issued.isdigit() or len(issued) > 12:
        return False
    fresh = 0 <= now_s - int(issued) <= SESSION_MAX_AGE_S
    return fresh and same_secret(value, session_value(token, int(issued)))


def same_secret(given: str | None, expected: str | None) -> bool:
    """Constant-time equality of two non-empty secrets; any text (a non-ASCII cookie or header) compares
    as its UTF-8 bytes, so it is unequal, never an error."""
    if not given or not expected:
        return False
    return hmac.compare_digest(str(given).encode("utf-8", "replace"), str(expected).encode("utf-8", "replace"))


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header (the scheme case-insensitive, RFC 6750); None for
    any other header, a bare token included."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def new_csrf_nonce() -> str:
    """The random value of the CSRF cookie: names the browser's session, is not itself the form's token."""
    return secrets.token_urlsafe(32)


def csrf_token(server_secret: bytes, nonce: str, session: str | None) -> str:
    """The token an action's form carries: an HMAC, keyed by the dashboard process's secret, of the browser's
    CSRF nonce and its sign-in session. A page on another port of the same host can set the nonce cookie
    (cookies ignore ports) but cannot compute the token, unlike a bare double-submit of the cookie."""
    return _mac(server_secret, f"csrf|{nonce}|{session or ''}")


def cross_origin_reason(headers: Mapping[str, str], own_origin: str) -> str | None:
    """Why an unsafe request is not from one of the dashboard's own pages (None when it is): its Origin (or,
    when the browser sent none, its Referer's origin) must be the dashboard's own, and a Sec-Fetch-Site a
    browser sends must say same-origin. A request with neither Origin nor Referer is refused."""
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"it comes from another site (Sec-Fetch-Site: {site[:40]})"
    origin = headers.get("origin")
    if origin is None:
        referer = headers.get("referer")
        if referer is None:
            return "it names no Origin or Referer"
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
    if origin.lower() != own_origin.lower():
        return f"it comes from another origin ({origin[:100]})"
    return None


def _token_key(token: str) -> bytes:
    return hashlib.sha256(b"bench-jobs-dashboard:" + token.encode()).digest()


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
