"""Writing site_config.toml: style-preserving (comments and key order survive), atomic, under a file lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

PRIVATE_MASK = 0o700  # what of a file's mode survives once it holds a secret: its owner's bits


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any

    @property
    def changed(self) -> bool:
        return bool(self.old != self.new)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the folder of `path` so that read-modify-write cycles never interleave. The
    folder, not a `<path>.lock` file: that file would stay behind next to the config (removing it after
    each write would let two writers hold locks on two different files), and not `path` itself, which each
    write replaces by a rename."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int = 0o644, private: bool = False) -> None:
    """Replace `path` with `text` via a temporary file in the same folder and a rename, keeping the mode of
    the file it replaces. With `private` (the text holds a secret) the result is never readable by group or
    others: the temporary file is created 0600 (mkstemp) and only ever narrowed, so no other user can read
    the secret at any instant, not even between the write and the rename."""
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode & 0o777
    if private:
        mode &= PRIVATE_MASK
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def update_config_file(path: Path, updates: Mapping[str, Any], private: bool = False) -> list[Change]:
    """Set top-level keys in a TOML file, keeping everything else byte for byte; returns each key's change.
    With `private` (a value is a secret) the file is rewritten readable by its owner only (write_atomic)."""
    import tomlkit  # here, not at the top: doctor reads configs through this module and never writes one
    from tomlkit.exceptions import ParseError

    with locked(path):
        try:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            document = tomlkit.parse(text)
        except ParseError as exc:
            raise ConfigError(f"{path}: malformed TOML: {exc}", hint="Fix the line named above.") from None
        changes = []
        for key, value in updates.items():
            old = document.get(key)
            old_value = old.unwrap() if old is not None and hasattr(old, "unwrap") else old
            changes.append(Change(key, old_value, value))
            if old_value != value:
                document[key] = value
        if any(change.changed for change in changes) or (private and path.exists() and _shared(path)):
            write_atomic(path, tomlkit.dumps(document), private=private)
        return changes


def _shared(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o077)
