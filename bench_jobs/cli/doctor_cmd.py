"""`doctor`: a health check a monitor can page on (exit 0 healthy, warnings included; 1 a check failed;
3 Redis down)."""

from __future__ import annotations

import typer

from . import state


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print {ok, checks: [{name, ok, detail, hint, level}]}."),
) -> int:
    """Check Redis, the scheduler, workers, stuck and failed jobs, hooks, time zones and config permissions.

    Without --site (and no default site) every site is checked. Exit 0 when all pass (a warning, such as a
    Redis that keeps no append-only file, passes), 1 when any fails, 3 when Redis does not answer.

    Examples:

    \b
      bench-jobs --site site1.local doctor
      bench-jobs --site all doctor --json
    """
    from ..errors import EXIT_FAILED, EXIT_OK
    from ..ops.doctor import run_doctor

    found = state.bench()
    sites = state.sites(found) if state.options.site or found.default_site() else found.site_names()
    report = run_doctor(found, sites)
    if as_json:
        state.print_json(report.as_json())
    else:
        from rich.markup import escape

        out = state.console()
        marks = {"ok": "[green]✓[/green]", "warning": "[yellow]![/yellow]", "error": "[red]✗[/red]"}
        for check in report.checks:
            out.print(f"{marks[check.level]} [bold]{escape(check.name)}[/bold]: {escape(check.detail)}")
            if check.hint:
                out.print(f"    [yellow]Hint:[/yellow] {escape(check.hint)}")
        failed = sum(check.level == "error" for check in report.checks)
        warnings = sum(check.level == "warning" for check in report.checks)
        summary = "[green]All checks passed[/green]" if not failed else f"[red]{failed} check(s) failed[/red]"
        if warnings:
            summary += f", [yellow]{warnings} warning{'s' if warnings > 1 else ''}[/yellow]"
        out.print(summary + ".")
    return EXIT_OK if report.ok else EXIT_FAILED


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
