"""Tables that stay readable at 80 columns and when piped: no side borders, one table per site under a
title (`--site all`), job ids shown without the bench-and-site prefix the title already names, so an id
never wraps letter by letter. Imports of rich stay inside the functions so `--help` stays fast."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    from rich.table import Table

    from ..core.config import BenchSettings
    from ..jobs.fair import SiteLoad


_RQ_ID = re.compile(r"[A-Za-z0-9_-]+")  # nothing in it a SCAN pattern reads as a wildcard


def table() -> Table:
    """A table with a header rule and no borders: two spaces between columns, nothing else. Its title is
    printed apart (`title`), so that it wraps at words instead of widening the table."""
    from rich import box
    from rich.table import Table

    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), expand=False)


def title(text: str) -> None:
    """A bold line above a table, wrapped at words to the terminal's width."""
    from rich.text import Text

    from . import state

    state.console().print(Text(text, style="bold"), soft_wrap=False)


def site_load_table(loads: list[SiteLoad]) -> Table:
    """Sites with jobs queued or a cap: their queued jobs, and their running jobs against their cap."""
    grid = table()
    grid.add_column("site", overflow="fold")
    for column in ("queued", "running", "cap"):
        grid.add_column(column, justify="right", no_wrap=True)
    for load in loads:
        running = f"{load.running} (at cap)" if load.at_cap else str(load.running) if load.cap else "-"
        grid.add_row(load.site, str(load.queued), running, str(load.cap or "-"))
    return grid


def short_id(job_id: str, prefix: str) -> str:
    """`job_id` without the site's prefix (`<bench>-<site>-`) and the dash a generated id adds after it; an
    id of another site, or one bench-jobs did not make, stays whole."""
    if not job_id.startswith(prefix):
        return job_id
    rest = job_id[len(prefix) :]
    return rest[1:] if rest.startswith("-") and len(rest) > 1 else rest


SHORT_ID_MIN = 8  # characters of an id's unique part a table shows at least, as git shows commits
SCAN_COUNT = 1000


def short_ids(job_ids: list[str], prefix: str) -> dict[str, str]:
    """Each id's unique part (`short_id`) cut to the shortest prefix, SHORT_ID_MIN characters or more, that no
    other id shown with it starts with, as git abbreviates commits; `--job-id` takes it back (`full_job_id`)."""
    if not prefix:  # ids of no site of the bench stay whole: only a site's prefix can be put back
        return {job_id: job_id for job_id in job_ids}
    parts = {job_id: short_id(job_id, prefix) for job_id in job_ids}
    ordered = sorted(set(parts.values()))
    length: dict[str, int] = {}
    for index, part in enumerate(ordered):
        shared = 0
        for neighbour in ordered[max(0, index - 1) : index] + ordered[index + 1 : index + 2]:
            shared = max(shared, _common_length(part, neighbour))
        length[part] = max(SHORT_ID_MIN, shared + 1)
    return {job_id: part[: length[part]] for job_id, part in parts.items()}


def _common_length(first: str, second: str) -> int:
    """How many leading characters the two strings share."""
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return length


def full_job_id(conn: redis.Redis, settings: BenchSettings, sites: list[str], given: str) -> str:
    """The job id `given`, or the whole id of a short one as the tables show it (`--job-id` takes both, and any
    unique beginning of the part after the site's prefix): ConfigError (exit 2) naming the candidates when
    several jobs of the selected sites start so, or when none does."""
    from rq.job import Job

    from ..core.keys import owner_of_job_id, site_job_prefix
    from ..errors import ConfigError

    owner = owner_of_job_id(given)
    if owner is not None and owner[0] == settings.bench_id:
        return given
    found: list[str] = []
    for site in sites:
        prefix = site_job_prefix(settings.bench_id, site)
        for candidate in (f"{prefix}-{given}", prefix + given):
            if conn.exists(Job.key_for(candidate)):
                return candidate
        if _RQ_ID.fullmatch(given):
            pattern = Job.key_for(f"{prefix}*{given}*")
            for key in conn.scan_iter(match=pattern, count=SCAN_COUNT):
                job_id = key.decode().removeprefix(Job.redis_job_namespace_prefix)
                if ":" not in job_id and short_id(job_id, prefix).startswith(given) and job_id not in found:
                    found.append(job_id)
    if len(found) == 1:
        return found[0]
    if not found and owner is not None:
        return given  # a whole id of another bench: the caller's check names that bench
    if found:
        shown = ", ".join(sorted(found)[:10]) + (", ..." if len(found) > 10 else "")
        raise ConfigError(
            f"Job id {given!r} is ambiguous: {len(found)} jobs of {', '.join(sites)} start so: {shown}.",
            hint="Give more characters of the id.",
        )
    raise ConfigError(
        f"No job of {', '.join(sites)} has the id {given!r} (nor one starting so).",
        hint="`show-failed-jobs` and `show-pending-jobs` list the ids.",
    )
