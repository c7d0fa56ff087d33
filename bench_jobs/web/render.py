"""Rendering for the dashboard: its Jinja2 templates and their filters (ages, durations, times), the
error every page can raise, and urlencoded forms read with the standard library."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
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
    return _duration(seconds) if seconds else "0s"


def _duration(seconds: float | None) -> str:
    """A duration in its two largest units (`3m 20s`), in seconds with a decimal under 10 s, in milliseconds
    under a second: a job of 4 ms reads `4 ms`, never `0.0s`."""
    if seconds is None:
        return "-"
    if seconds < 1:
        milliseconds = seconds * 1000
        return "0 ms" if seconds <= 0 else ("<1 ms" if milliseconds < 1 else f"{milliseconds:.0f} ms")
    whole = int(seconds)
    units = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))
    for (size, unit), (smaller, small_unit) in itertools.pairwise(units):
        if whole >= size:
            return f"{whole // size}{unit} {whole % size // smaller}{small_unit}"
    return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment else "-"


# A command a hint names (`bench-jobs --site SITE show-failed-jobs`) and the page doing the same: SITE's
# page ({site}) or every site's list when the command names every site or none.
_COMMAND = re.compile(
    r"(?:bench-jobs )?(?:--site (?P<site>[A-Za-z0-9._-]+) )?"
    r"(?P<command>show-failed-jobs|requeue-failed-jobs|show-pending-jobs|purge-jobs|enable-scheduler|"
    r"disable-scheduler|show-schedule|show-queue|doctor)\b"
)
_PAGES = {
    "show-failed-jobs": ("/sites/{site}?status=failed", "/jobs?status=failed"),
    "requeue-failed-jobs": ("/sites/{site}?status=failed", "/jobs?status=failed"),
    "show-pending-jobs": ("/sites/{site}?status=pending", "/jobs?status=pending"),
    "purge-jobs": ("/sites/{site}", "/sites"),
    "enable-scheduler": ("/sites/{site}", "/sites"),
    "disable-scheduler": ("/sites/{site}", "/sites"),
    "show-schedule": ("/schedule?site={site}", "/schedule"),
    "show-queue": ("/", "/"),
    "doctor": ("/", "/"),
}


def command_links(text: str | None) -> Markup:
    """`text` (a hint) escaped, each command it names linked to the dashboard page that does the same."""
    out, last = [], 0
    for found in _COMMAND.finditer(text or ""):
        site = found.group("site")
        one_site, every_site = _PAGES[found.group("command")]
        href = one_site.format(site=quote(site, safe="")) if site and site != "all" else every_site
        out += [escape(found.string[last : found.start()]), Markup('<a href="{}">{}</a>').format(href, found[0])]
        last = found.end()
    out.append(escape((text or "")[last:]))
    return Markup("").join(out)


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
    env.filters.update(
        age=_age, when=_when, duration=_duration, commands=command_links, q=lambda value: quote(str(value), safe="")
    )
    return env
