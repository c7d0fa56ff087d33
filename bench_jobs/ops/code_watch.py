"""`start` watches the source files of the bench's apps, as a web framework's development server does: it polls
their modification times (no dependency, no inotify limits), waits for a burst of saves to settle, and then
reports the files that changed, added or removed, once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from ..core.app_files import app_roots, bench_apps, source_mtimes
from ..core.bench import Bench

POLL_INTERVAL_S = 1.0  # how often the files' modification times are read
SETTLE_S = 0.5  # a change is reported once the files have stayed as they are for this long
SETTLE_MAX_S = 5.0  # ... or this long after the first change, while saves keep coming


class CodeWatch:
    """A thread that calls `on_change` with the changed files (sorted) after each settled burst of changes."""

    def __init__(self, bench: Bench, on_change: Callable[[list[Path]], None]) -> None:
        self._roots = list(app_roots(bench, bench_apps(bench)).values())
        self._on_change = on_change
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="code-watch", daemon=True)

    @property
    def roots(self) -> list[Path]:
        """The apps' package folders (or module files) watched."""
        return list(self._roots)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (also when the watch never started: `start` failed before it)."""
        self._stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        seen = source_mtimes(self._roots)
        while not self._stopping.wait(POLL_INTERVAL_S):
            current = source_mtimes(self._roots)
            if current == seen:
                continue
            changed = _changes(seen, current)
            waited_s = 0.0
            # A save is often several writes (an editor's temp file and rename, a formatter after it, a git
            # checkout of many files): one reload for the burst, not one per write.
            while waited_s < SETTLE_MAX_S and not self._stopping.wait(SETTLE_S):
                waited_s += SETTLE_S
                settled = source_mtimes(self._roots)
                if settled == current:
                    break
                changed |= _changes(current, settled)
                current = settled
            seen = current
            if not self._stopping.is_set():
                self._on_change(sorted(changed))


def _changes(before: dict[Path, int], after: dict[Path, int]) -> set[Path]:
    """The files added, removed or modified between two readings."""
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def shown(bench: Bench, path: Path) -> str:
    """`path` relative to the bench when it lies inside it, else as it is."""
    return str(path.relative_to(bench.root)) if path.is_relative_to(bench.root) else str(path)
