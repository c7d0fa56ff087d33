"""Writing site_config.toml: comments kept, atomic, and concurrent writers lose nothing (DESIGN 2)."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from bench_jobs.core.config_writer import update_config_file


def test_update_keeps_comments_order_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "site_config.toml"
    path.write_text('# my note\ntimezone = "UTC"  # inline note\nscheduler_enabled = false\n\n[extra]\nx = 1\n')
    changes = update_config_file(path, {"scheduler_enabled": True, "maintenance_mode": False})
    text = path.read_text()
    assert "# my note" in text and "# inline note" in text
    assert text.index("timezone") < text.index("scheduler_enabled")
    data = tomllib.loads(text)
    assert data["scheduler_enabled"] is True
    assert data["maintenance_mode"] is False
    assert data["extra"] == {"x": 1}
    assert [(c.key, c.old, c.new, c.changed) for c in changes] == [
        ("scheduler_enabled", False, True, True),
        ("maintenance_mode", None, False, True),
    ]


def test_unchanged_values_do_not_rewrite_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site_config.toml"
    path.write_text("scheduler_enabled = true\n")
    before = path.stat().st_mtime_ns, path.stat().st_ino
    (change,) = update_config_file(path, {"scheduler_enabled": True})
    assert not change.changed
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_file_mode_survives_the_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "site_config.toml"
    path.write_text("a = 1\n")
    path.chmod(0o600)
    update_config_file(path, {"a": 2})
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _write_key(path: str, index: int, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    update_config_file(Path(path), {f"key_{index}": index})


def test_twenty_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "site_config.toml"
    path.write_text("# keep this comment\nscheduler_enabled = true\n")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(20)
    workers = [context.Process(target=_write_key, args=(str(path), i, barrier)) for i in range(20)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    data = tomllib.loads(path.read_text())
    assert {f"key_{i}" for i in range(20)} <= set(data)
    assert all(data[f"key_{i}"] == i for i in range(20))
    assert data["scheduler_enabled"] is True
    assert "# keep this comment" in path.read_text()
