"""The command table (bench_jobs/cli/commands.py): a command's module is imported only when that command runs,
`--help` lists every command from the table, and doctor and show-queue import nothing they do not use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import RedisServer, run_cli, write

from bench_jobs.cli.commands import COMMANDS, SHORT_COMMANDS

COMMAND_MODULES = sorted({f"bench_jobs.cli.{entry.target.partition(':')[0]}" for entry in COMMANDS.values()})
# What neither doctor nor show-queue needs: the web layer, the worker, the scheduler's loop and previews,
# config writing (tomlkit), croniter on a bench without cron strings, rich's emoji table (text is data, never
# an emoji code), and every other command's module.
NEVER_NEEDED = (
    "bench_jobs.web",
    "bench_jobs.worker",
    "bench_jobs.scheduler.preview",
    "bench_jobs.scheduler.loop",
    "bench_jobs.scheduler.tick",
    "bench_jobs.ops.start",
    "jinja2",
    "prometheus_client",
    "tomlkit",
    "croniter",
    "rich._emoji_codes",
)
SHOW_QUEUE_NEVER = (
    *NEVER_NEEDED,
    "bench_jobs.ops",
    "bench_jobs.scheduler",
    "bench_jobs.core.hooks",
    "bench_jobs.jobs.history",
)


def imported_after(argv: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    """Run main(argv) in a fresh interpreter; its exit code and the bench_jobs and third-party modules loaded."""
    code = (
        "import contextlib, io, json, sys\n"
        "from bench_jobs.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({argv!r})\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def loaded(modules: object, names: tuple[str, ...] | list[str]) -> list[str]:
    """Which of `names` (a package counts with its submodules) are among `modules`."""
    assert isinstance(modules, list)
    return sorted(name for name in names if any(m == name or m.startswith(name + ".") for m in modules))


@pytest.fixture
def plain_bench(tmp_path: Path, redis_server: RedisServer) -> Path:
    """Two sites, no apps: no cron string anywhere, so nothing asks for croniter."""
    root = tmp_path / "plain"
    write(root / "sites" / "common_site_config.toml", f'redis_queue = "{redis_server.url}"\nbench_id = "plain"\n')
    for site in ("one.test", "two.test"):
        write(root / "sites" / site / "site_config.toml", 'timezone = "UTC"\nscheduler_enabled = true\n')
    return root


def test_show_queue_imports_only_what_it_uses(plain_bench: Path) -> None:
    found = imported_after(["--bench", str(plain_bench), "show-queue"])
    assert found["code"] == 0
    assert loaded(found["modules"], SHOW_QUEUE_NEVER) == []
    assert loaded(found["modules"], COMMAND_MODULES) == ["bench_jobs.cli.queue_cmds"]


def test_doctor_imports_only_what_it_uses(plain_bench: Path) -> None:
    found = imported_after(["--bench", str(plain_bench), "--site", "one.test", "doctor"])
    assert found["code"] == 1  # no scheduler, no worker: checks fail, and doctor still ran every one
    assert loaded(found["modules"], NEVER_NEEDED) == []
    assert loaded(found["modules"], COMMAND_MODULES) == ["bench_jobs.cli.doctor_cmd"]


def test_help_imports_no_command_module_and_a_commands_help_only_its_own() -> None:
    assert loaded(imported_after(["--help"])["modules"], COMMAND_MODULES) == []
    for name in ("show-queue", "doctor", "setup", "scheduler"):
        module = f"bench_jobs.cli.{COMMANDS[name].target.partition(':')[0]}"
        assert loaded(imported_after([name, "--help"])["modules"], COMMAND_MODULES) == [module], name


def test_the_tables_short_help_is_each_commands_first_sentence() -> None:
    """`--help` lists the table's text: it must be what the command's own help starts with."""
    import typer

    from bench_jobs.cli.main import app

    group = typer.main.get_command(app)
    context = typer.Context(group, info_name="bench-jobs")
    for name, entry in COMMANDS.items():
        command = group.get_command(context, name)  # type: ignore[attr-defined]
        assert command is not None and command.name == name
        assert command.get_short_help_str(10**6) == entry.help, f"{name}: update its line in cli/commands.py"


def test_help_lists_the_table_in_order_and_a_misspelt_command_gets_a_suggestion() -> None:
    listed = run_cli("--help").stdout
    rows = [row.split(maxsplit=1) for row in listed.split("Commands:\n", 1)[1].splitlines() if row.strip()]
    assert [row[0] for row in rows] == list(COMMANDS)
    for (name, shown), entry in zip(rows, COMMANDS.values(), strict=True):
        assert entry.help.startswith(shown.removesuffix("...")), name
    typo = run_cli("show-queu")
    assert typo.returncode == 2 and "Did you mean 'show-queue'" in typo.stderr, typo.stderr


def gc_at_exit(argv: list[str], entry: str) -> dict[str, object]:
    """Run `argv` through `entry` ("script": the `bench-jobs` script's run(), "main": cli.main() as a host
    program calls it) in a fresh interpreter; whether the cyclic GC was on, and objects were frozen, at exit."""
    call = (
        "from bench_jobs.__main__ import run\nsys.argv = ['bench-jobs', *argv]\nrun()\n"
        if entry == "script"
        else "from bench_jobs.cli import main\nsys.exit(main(argv))\n"
    )
    code = (
        "import atexit, contextlib, gc, io, json, sys\n"
        f"argv = {argv!r}\n"
        "out = sys.stdout\n"
        "atexit.register(lambda: out.write(json.dumps({'enabled': gc.isenabled(), 'frozen': gc.get_freeze_count()})))\n"
        "sys.stdout = io.StringIO()\n" + call
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_script_pauses_the_gc_for_a_short_command_and_gives_it_back_to_any_other(plain_bench: Path) -> None:
    """Start-up frees next to nothing: the script runs without the cyclic GC, frozen at exit (no full collection
    on the way out); a command outside SHORT_COMMANDS (a worker) gets the collector back before it runs."""
    assert {"show-queue", "doctor"} <= SHORT_COMMANDS
    assert not {"worker", "schedule", "start", "dashboard", "execute"} & SHORT_COMMANDS
    short = gc_at_exit(["--bench", str(plain_bench), "show-queue"], "script")
    assert short["enabled"] is False and short["frozen"] > 0
    long_running = gc_at_exit(["worker", "--help"], "script")
    assert long_running["enabled"] is True and long_running["frozen"] > 0


def test_main_called_by_a_program_leaves_its_gc_alone(plain_bench: Path) -> None:
    found = gc_at_exit(["--bench", str(plain_bench), "show-queue"], "main")
    assert found == {"enabled": True, "frozen": 0}
    assert gc_at_exit(["worker", "--help"], "main") == {"enabled": True, "frozen": 0}
