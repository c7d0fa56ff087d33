"""`doctor`: a health check a monitor can page on (exit 0 healthy, warnings included; 1 a check failed;
3 Redis down)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import typer

from . import state

if TYPE_CHECKING:
    from ..ops.checks import Check

GROUP_MIN_SITES = 4  # from this many sites on, per-site checks print one line per kind unless --verbose
GROUP_SHOWN_SITES = 10  # failing sites named on a grouped line before "+N more"


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print {ok, checks: [{name, ok, detail, hint, level}]}."),
) -> int:
    """Check Redis, the scheduler, workers (and `rq suspend`), stuck and failed jobs, hooks, time zones and
    config permissions.

    Without --site (and no default site) every site is checked. Exit 0 when all pass (a warning, such as a
    Redis that keeps no append-only file, a paused scheduler or kept failed jobs, passes; doctor_failed_jobs =
    "error" makes failed jobs fail), 1 when any fails, 3 when Redis does not answer (the
    report still shows, with a failed `redis` check). From 4 sites on, each per-site check prints one line
    naming the failing sites; --verbose prints every site's line.

    Examples:

    \b
      bench-jobs --site site1.local doctor
      bench-jobs --site all doctor --json
    """
    from ..errors import EXIT_FAILED, EXIT_OK
    from ..ops.doctor import run_doctor

    found = state.bench()
    sites = state.sites(found) if state.options.site or found.default_site() else found.site_names()
    with _spinner(len(sites)):
        report = run_doctor(found, sites)
    if as_json:
        state.print_json(report.as_json())
    else:
        from rich.markup import escape

        out = state.console()
        marks = {"ok": "[green]✓[/green]", "warning": "[yellow]![/yellow]", "error": "[red]✗[/red]"}
        checks = report.checks
        if len(sites) >= GROUP_MIN_SITES and not state.options.verbose:
            checks = group_checks(checks)
        for check in checks:
            # soft_wrap off: long details and hints wrap to the terminal's width (80 columns when piped)
            line = f"{marks[check.level]} [bold]{escape(check.name)}[/bold]: {escape(check.detail)}"
            out.print(line, soft_wrap=False, markup=True)
            if check.hint:
                out.print(f"    [yellow]Hint:[/yellow] {escape(check.hint)}", soft_wrap=False, markup=True)
        failed = sum(check.level == "error" for check in report.checks)
        warnings = sum(check.level == "warning" for check in report.checks)
        summary = "[green]All checks passed[/green]" if not failed else f"[red]{failed} check(s) failed[/red]"
        if warnings:
            summary += f", [yellow]{warnings} warning{'s' if warnings > 1 else ''}[/yellow]"
        out.print(summary + ".", markup=True)
    if report.exit_code is not None:  # Redis is down: the failed `redis` check says so on stderr too
        redis_check = next(check for check in report.checks if check.name == "redis")
        err = state.error_console()
        err.print(f"Error: {redis_check.detail}", markup=False, soft_wrap=True)
        err.print(f"Hint: {redis_check.hint}", markup=False, soft_wrap=True)
        return report.exit_code
    return EXIT_OK if report.ok else EXIT_FAILED


def group_checks(checks: list[Check]) -> list[Check]:
    """Per-site checks (`kind:site`) folded into one line per kind, in the place of the kind's first check:
    how many sites pass, the failing (or warning) sites with the first one's detail and hint."""
    from ..ops.checks import Check

    kinds: dict[str, list[Check]] = {}
    for check in checks:
        kind, _, site = check.name.partition(":")
        if site and not kind.startswith(("workers", "failed-jobs")):  # those are per queue, few
            kinds.setdefault(kind, []).append(check)
    grouped_ids = {id(member) for members in kinds.values() for member in members}
    grouped: list[Check] = []
    for check in checks:
        if id(check) not in grouped_ids:
            grouped.append(check)
            continue
        kind = check.name.partition(":")[0]
        members = kinds[kind]
        if check is not members[0]:
            continue
        bad = [member for member in members if member.level != "ok"]
        if not bad:
            grouped.append(Check(kind, True, f"{len(members)} site(s) ok"))
            continue
        names = [member.name.partition(":")[2] for member in bad]
        shown = ", ".join(names[:GROUP_SHOWN_SITES]) + (
            f" (+{len(names) - GROUP_SHOWN_SITES} more)" if len(names) > GROUP_SHOWN_SITES else ""
        )
        first = bad[0]
        detail = f"{names[0]}: {first.detail} (1 of {len(members)} sites)"
        if len(bad) > 1:
            detail = f"{len(bad)} of {len(members)} sites: {shown}; {names[0]}: {first.detail}"
        grouped.append(Check(kind, all(m.ok for m in bad), detail, first.hint, warning=first.warning))
    return grouped


def _spinner(sites: int) -> AbstractContextManager[object]:
    """A transient spinner on stderr while doctor checks many sites, only when stderr is a terminal."""
    import contextlib

    err = state.error_console()
    if sites < GROUP_MIN_SITES or not err.is_terminal:
        return contextlib.nullcontext()
    return err.status(f"Checking {sites} sites...")
