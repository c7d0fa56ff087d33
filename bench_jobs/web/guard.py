"""Every request's gate: the body cap, the Host rule, the sign-in, where an unsafe request comes from, the
CSRF token of the forms, the security headers, and expected errors as pages (never a traceback)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import BenchJobsError, ConfigError, RedisUnavailable
from .render import MAX_FORM_BYTES, HTTPProblem
from .security import (
    CSRF_COOKIE,
    SESSION_MAX_AGE_S,
    TOKEN_COOKIE,
    bearer_token,
    cross_origin_reason,
    csrf_token,
    is_loopback,
    new_csrf_nonce,
    same_secret,
    session_value,
    valid_session,
)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
log = logging.getLogger("bench_jobs.web")

Handler = Callable[[Request], Awaitable[Response]]
Renderer = Callable[..., Response]


class BodyTooLarge(HTTPProblem):
    """Raised when a request's body is over MAX_FORM_BYTES (every form here is far smaller)."""

    def __init__(self) -> None:
        super().__init__(413, f"Request body over {MAX_FORM_BYTES} bytes.", "Every form of this dashboard is smaller.")


class BodyLimit:
    """ASGI middleware that stops reading a body past `max_bytes`, also one streamed without Content-Length:
    the read raises BodyTooLarge (a 413 page), so no request can make the dashboard hold a big body."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_FORM_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge()
            return message

        await self.app(scope, capped, send)


@dataclass(frozen=True)
class Gate:
    """Who is signed in and which CSRF token their forms carry: `secret` is the dashboard process's own."""

    token: str | None
    secret: bytes

    def signed_in(self, request: Request) -> bool:
        """No token configured, a fresh session cookie, or `Authorization: Bearer TOKEN`."""
        if not self.token:
            return True
        if valid_session(request.cookies.get(TOKEN_COOKIE), self.token, time.time()):
            return True
        return same_secret(bearer_token(request.headers.get("authorization")), self.token)

    def csrf_of(self, nonce: str, request: Request) -> str:
        return csrf_token(self.secret, nonce, request.cookies.get(TOKEN_COOKIE) if self.token else None)

    def check_form(self, request: Request, form: dict[str, str]) -> None:
        """403 unless the form carries the CSRF token of this browser's session."""
        if not same_secret(form.get("csrf"), request.state.csrf):
            raise HTTPProblem(403, "This action has no valid CSRF token.", "Reload the page and try again.")

    def seal(self, message: str) -> str:
        """A flash message as its cookie: quoted, with an HMAC under the process's secret, so a page on another
        port of the host (cookies ignore ports) cannot plant a message of its own on the dashboard."""
        quoted = quote(message, safe="")
        return f"{quoted}.{csrf_token(self.secret, 'flash', quoted)}"

    def unseal(self, value: str) -> str:
        """The message of a flash cookie this process sealed; "" for any other."""
        quoted, _, mac = value.rpartition(".")
        return unquote(quoted) if quoted and same_secret(mac, csrf_token(self.secret, "flash", quoted)) else ""

    def sign_in(self, response: Response) -> None:
        assert self.token is not None
        value = session_value(self.token, int(time.time()))
        response.set_cookie(TOKEN_COOKIE, value, max_age=SESSION_MAX_AGE_S, httponly=True, samesite="strict")


def _declared_length(request: Request) -> int:
    text = request.headers.get("content-length", "0").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else MAX_FORM_BYTES + 1


def guard(gate: Gate, render: Renderer) -> Callable[[Request, Handler], Awaitable[Response]]:
    """The dispatch of the dashboard's middleware. Without a token only a loopback Host is served: a page
    whose DNS name rebinds to 127.0.0.1 would otherwise be same-origin with the dashboard."""

    async def dispatch(request: Request, call_next: Handler) -> Response:
        nonce = request.cookies.get(CSRF_COOKIE) or ""
        if not (nonce.isascii() and 20 <= len(nonce) <= 100):
            nonce = new_csrf_nonce()
        request.state.csrf = gate.csrf_of(nonce, request)
        request.state.signed_in = False
        try:
            if not gate.token and not is_loopback(request.url.hostname or ""):
                raise HTTPProblem(400, "This dashboard answers only to 127.0.0.1, localhost and ::1.")
            if _declared_length(request) > MAX_FORM_BYTES:
                raise BodyTooLarge()
            if request.method not in SAFE_METHODS:
                reason = cross_origin_reason(request.headers, f"{request.url.scheme}://{request.url.netloc}")
                if reason:
                    raise HTTPProblem(403, f"Refused: {reason}.", "Use the dashboard's own pages.")
            request.state.signed_in = gate.signed_in(request)
            if not request.state.signed_in and request.url.path != "/login":
                response = render(request, "login.html", code=401, failed=False)
            else:
                response = await call_next(request)
        except Exception as exc:
            response = error_page(request, exc, render)
        if request.cookies.get(CSRF_COOKIE) != nonce:
            response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict")
        response.headers.update(SECURITY_HEADERS)
        return response

    return dispatch


def error_page(request: Request, exc: Exception, render: Renderer) -> Response:
    """An expected error as its page: 4xx for what the request got wrong, 503 when Redis does not answer,
    409 for a refused operation, and 500 (logged with its traceback) for anything else."""
    shown: dict[str, Any]
    exc = _cut_body(exc) or exc
    if isinstance(exc, HTTPProblem):
        code, shown = exc.status, {"message": exc.message, "hint": exc.hint}
    elif isinstance(exc, RedisUnavailable):
        code, shown = 503, {"message": exc.message, "hint": exc.hint}
    elif isinstance(exc, ConfigError):
        code, shown = 400, {"message": exc.message, "hint": exc.hint}
    elif isinstance(exc, BenchJobsError):
        code, shown = 409, {"message": exc.message, "hint": exc.hint}
    elif isinstance(exc, redis.RedisError):
        code, shown = 503, {"message": f"Redis: {type(exc).__name__}", "hint": None}
    else:
        log.error("dashboard error on %s %s", request.method, request.url.path, exc_info=exc)
        code, shown = 500, {"message": "Internal error; the dashboard's log has it.", "hint": None}
    return render(request, "error.html", code, **shown)


def _cut_body(exc: BaseException | None) -> BodyTooLarge | None:
    """The BodyTooLarge inside `exc`: raised while a route read the body, it reaches the guard wrapped by
    Starlette's middleware (an exception group, or as the cause of another error)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, BodyTooLarge):
            return exc
        inner = getattr(exc, "exceptions", None)  # an ExceptionGroup (Python 3.11+, anyio's backport)
        exc = inner[0] if isinstance(inner, tuple) and inner else exc.__cause__ or exc.__context__
        seen += 1
    return None
