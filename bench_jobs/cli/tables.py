"""Tables that stay readable at 80 columns and when piped: no side borders, one table per site under a
title (`--site all`), job ids shown without the bench-and-site prefix the title already names, so an id
never wraps letter by letter. Imports of rich stay inside the functions so `--help` stays fast."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    from rich.table import Table

    from ..core.config import BenchSettings


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


def short_id(job_id: str, prefix: str) -> str:
    """`job_id` without the site's prefix (`<bench>-<site>-`) and the dash a generated id adds after it; an
    id of another site, or one bench-jobs did not make, stays whole."""
    if not job_id.startswith(prefix):
        return job_id
    rest = job_id[len(prefix) :]
    return rest[1:] if rest.startswith("-") and len(rest) > 1 else rest


def full_job_id(conn: redis.Redis, settings: BenchSettings, sites: list[str], given: str) -> str:
    """The job id `given`, or the whole id of a short one as the tables show it (`--job-id` takes both):
    tried under each selected site's prefix, and the first whose job exists wins."""
    from rq.job import Job

    from ..core.keys import owner_of_job_id, site_job_prefix

    owner = owner_of_job_id(given)
    if owner is not None and owner[0] == settings.bench_id:
        return given
    for site in sites:
        prefix = site_job_prefix(settings.bench_id, site)
        for candidate in (f"{prefix}-{given}", prefix + given):
            if conn.exists(Job.key_for(candidate)):
                return candidate
    return given
