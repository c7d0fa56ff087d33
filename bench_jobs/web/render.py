"""Rendering for the dashboard: its Jinja2 templates and their filters (ages, durations, times), the
error every page can raise, and urlencoded forms read with the standard library."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request

MAX_FORM_BYTES = 16_384


class HTTPProblem(Exception):
    """A page that cannot be shown: a status (400, 403, 404, 503), a message and an optional hint."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def _age(moment: datetime | None) -> str:
    """How long ago `moment` was, in its two largest units: `45s`, `3m 20s`, `2h 5m`, `1d 3h`."""
    if moment is None:
        return "-"
    seconds = max(0, int((datetime.now(timezone.utc) - moment).total_seconds()))
    return _duration(seconds)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = int(seconds)
    units = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))
    for (size, unit), (smaller, small_unit) in itertools.pairwise(units):
        if whole >= size:
            return f"{whole // size}{unit} {whole % size // smaller}{small_unit}"
    return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment else "-"


async def url_form(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form (every form here is one), first value of each: parsed with the
    standard library, so the web extra needs no multipart parser."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPProblem(400, "Form too large.")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def templates() -> Environment:
    """The dashboard's templates, autoescaped, with its filters."""
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=_age, when=_when, duration=_duration, q=lambda value: quote(str(value), safe=""))
    return env
