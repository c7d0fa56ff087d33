"""Redis URLs: what of them may be shown, whether they hold a secret, and whether redis-py reads them as meant.

A password may hold any character, unencoded '/', '?', '#' or '@' too, so nothing here trusts urllib's split
of the user-info: the user-info is everything between `scheme://` and the last '@'.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

REDACTED_URL = "<redacted URL>"
REDIS_SCHEMES = ("redis", "rediss", "unix")
SECRET = "***"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9_.-]+")
_SECRET_NAME = re.compile(r"pass|secret|token|auth", re.IGNORECASE)
_UNENCODED = "/?#[]"
# Query options still shown after a secret one: anything else there may be the rest of a secret that holds an
# unencoded '&' (redis-py's own URL options, and the TLS ones people add).
_PLAIN_OPTIONS = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry_on_timeout",
        "max_connections",
        "health_check_interval",
        "client_name",
        "protocol",
        "timeout",
        "ssl",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_min_version",
    }
)


@dataclass(frozen=True)
class _Pieces:
    scheme: str
    user_info: str | None  # what comes before the last '@'; None without an '@'
    rest: str  # host, port, path and query


def _pieces(url: str) -> _Pieces | None:
    match = _SCHEME.match(url)
    if match is None:
        return None
    user_info, at, rest = url[match.end() :].rpartition("@")
    return _Pieces(match.group(1), user_info if at else None, rest)


def redact_url(url: str) -> str:
    """`url` with any password (in the user-info or a `password=`-like query item) replaced by `***`, safe to
    print or log whatever characters the password holds; `<redacted URL>` when it has no `scheme://`."""
    pieces = _pieces(url)
    if pieces is None:
        return REDACTED_URL
    shown = f"{pieces.scheme}://"
    if pieces.user_info is not None:
        user, colon, _ = pieces.user_info.partition(":")
        # Only a user name before a ':' is shown: without one, the user-info may be a mistyped password.
        shown_user = f"{user}:{SECRET}" if colon and not any(c in user for c in _UNENCODED) else SECRET
        shown += shown_user + "@"
    head, question, query = pieces.rest.partition("?")
    return shown + head + (question + _redacted_query(query) if question else "")


def _redacted_query(query: str) -> str:
    shown: list[str] = []
    after_secret = False
    for item in query.split("&"):
        name = item.partition("=")[0]
        if _SECRET_NAME.search(unquote(name)):
            shown.append(f"{name}={SECRET}")
            after_secret = True
        elif after_secret and unquote(name).strip().lower() not in _PLAIN_OPTIONS:
            shown.append(SECRET)
        else:
            shown.append(item)
    return "&".join(shown)


def scheme_and_host(url: str) -> str:
    """Only `scheme://host` of `url`, for one too broken to redact piece by piece; else `<redacted URL>`."""
    pieces = _pieces(url)
    host = _HOST.match(pieces.rest) if pieces is not None else None
    if pieces is None or host is None:
        return REDACTED_URL
    return f"{pieces.scheme}://{host.group(0)}"


def url_has_password(url: str) -> bool:
    """Whether `url` holds a secret: any user-info (it may be a password written without its ':'), or a
    `password=`-like query item."""
    pieces = _pieces(url)
    if pieces is None:
        return "@" in url or bool(_SECRET_NAME.search(url))
    if pieces.user_info and not pieces.user_info.startswith("/"):
        return True
    _, question, query = pieces.rest.partition("?")
    return bool(question) and any(_SECRET_NAME.search(unquote(item.partition("=")[0])) for item in query.split("&"))


def redis_url_problem(url: str) -> tuple[str, str] | None:
    """(what is wrong, what is allowed) when redis-py cannot read `url` as meant, else None; neither names
    the password, nor any text a misread password could have turned into (urllib's port or host)."""
    pieces = _pieces(url)
    if pieces is None or pieces.scheme not in REDIS_SCHEMES:
        return f"is {scheme_and_host(url)}, not a Redis URL", "a redis://, rediss:// or unix:// URL"
    user_info = pieces.user_info or ""
    # `scheme:///path@...` has no user-info at all: that '@' is in a socket path.
    if not user_info.startswith("/") and any(c in user_info for c in _UNENCODED):
        return (
            f"is {redact_url(url)}, whose user name or password holds an unencoded '/', '?', '#', '[' or ']' "
            "(Redis would read part of the password as the host, path or query)",
            "a password with those characters percent-encoded (/ %2F, ? %3F, # %23, [ %5B, ] %5D, @ %40), "
            "e.g. redis://:pa%3Fss@127.0.0.1:6379/0",
        )
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed '[': its message would quote nothing useful
        return f"is {scheme_and_host(url)}, which cannot be parsed as a URL", "redis://host:6379/0"
    try:
        port = parts.port
    except ValueError as exc:  # its message would quote the port, which may be a misread piece of the password
        if str(exc).startswith("Port out of range"):  # that message quotes nothing
            return f"is {scheme_and_host(url)}, whose port is out of range", "a port from 1 to 65535"
        return f"is {scheme_and_host(url)}, whose port is not a number", "redis://host:6379/0"
    if port == 0:
        return f"is {scheme_and_host(url)}, whose port is out of range", "a port from 1 to 65535"
    return _option_problem(url, parts.query)


def _option_problem(url: str, query: str) -> tuple[str, str] | None:
    """A query option redis-py would fail to read (`?socket_timeout=abc`), named without its value."""
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    parsers = cast(dict[str, Callable[[str], object]], URL_QUERY_ARGUMENT_PARSERS)
    for name, values in parse_qs(query).items():
        parser = parsers.get(name)
        if parser is None or not values:
            continue
        try:
            parser(values[0])
        except (TypeError, ValueError):
            kind = getattr(parser, "__name__", "value")
            return (
                f"is {scheme_and_host(url)}, whose option {name!r} is not a valid {kind}",
                f"{name}=<{kind}>, e.g. ?socket_timeout=5",
            )
    return None
