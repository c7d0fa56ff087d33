"""A Typer group that imports a command's module only when that command runs (or shows its own --help).

`bench-jobs doctor` then imports doctor's module and no other command's, and Typer turns one function into a
click command instead of all of them. `--help` lists every command from the table in commands.py without
importing any; "Did you mean" and shell completion see every name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from typer.core import TyperCommand, TyperGroup

from .commands import COMMANDS

try:  # typer 0.26+ ships its own copy of click
    from typer._click import Command as Command
    from typer._click import Context, HelpFormatter
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import Command as Command  # type: ignore[assignment]
    from click import Context, HelpFormatter  # type: ignore[assignment]


def import_target(target: str) -> Any:
    """The object `module:attribute` of a COMMANDS entry, its module imported from this package."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(f".{module}", __package__), attribute)


class LazyCommands(MutableMapping[str, Command]):
    """A group's commands: those registered on the app as usual (`eager`), and every command of COMMANDS,
    made by `load` at its first lookup. Iterates in COMMANDS' order, then the eager ones."""

    def __init__(self, eager: MutableMapping[str, Command], load: Callable[[str], Command]) -> None:
        self._eager = dict(eager)
        self._load = load

    def __getitem__(self, name: str) -> Command:
        if name in self._eager:
            return self._eager[name]
        if name in COMMANDS:
            return self._load(name)
        raise KeyError(name)

    def __setitem__(self, name: str, command: Command) -> None:
        self._eager[name] = command

    def __delitem__(self, name: str) -> None:
        del self._eager[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._eager if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS) + sum(name not in COMMANDS for name in self._eager)

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self._eager

    def listed(self, name: str) -> Command:
        """What `--help` lists for `name`: the command when it is registered, else a stand-in carrying the
        short help of its COMMANDS entry (nothing imported)."""
        if name in self._eager:
            return self._eager[name]
        return TyperCommand(name, help=COMMANDS[name].help)


class LazyGroup(TyperGroup):
    """The root group: subclasses say how a COMMANDS entry becomes a click command (`load`)."""

    def __init__(self, *, commands: Any = None, **attrs: Any) -> None:
        # Typer declares a dict, and keeps whatever mapping it is given (as click does)
        super().__init__(commands=LazyCommands(dict(commands or {}), self.load), **attrs)  # type: ignore[arg-type]

    def load(self, name: str) -> Command:
        raise NotImplementedError

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # the names only: Typer's own would load every command through items()

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Click's command list (name and short help, cut to the width) from the table, importing nothing."""
        lazy = self.commands
        assert isinstance(lazy, LazyCommands)
        commands = [(name, lazy.listed(name)) for name in self.list_commands(ctx)]
        commands = [(name, command) for name, command in commands if not command.hidden]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
