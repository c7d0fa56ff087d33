"""Writing site_config.toml: comments kept, atomic, and concurrent writers lose nothing (DESIGN 2)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from bench_jobs.core.bench import Bench
from bench_jobs.core.config_edit import set_config
from bench_jobs.core.config_writer import update_config_file
from bench_jobs.web.security import resolve_access


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


def _modes_at_rename(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The mode of each temporary file at the instant it replaces the config (what another user could read)."""
    seen: list[int] = []
    real_replace = os.replace

    def replace(src: str, dst: str) -> None:
        seen.append(os.stat(src).st_mode & 0o777)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return seen


def test_a_secret_is_never_in_a_world_readable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "common_site_config.toml"
    path.write_text("a = 1\n")
    path.chmod(0o644)
    seen = _modes_at_rename(monkeypatch)
    update_config_file(path, {"db_password": "hunter2"}, private=True)
    assert seen == [0o600]
    assert path.stat().st_mode & 0o777 == 0o600


def test_set_config_of_a_password_writes_it_private_from_the_first_byte(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.common_config_path.chmod(0o644)
    seen = _modes_at_rename(monkeypatch)
    set_config(bench, "db_password", "hunter2", None)
    assert seen == [0o600]


def test_new_dashboard_token_is_written_private_from_the_first_byte(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench.common_config_path.chmod(0o644)
    seen = _modes_at_rename(monkeypatch)
    resolve_access(bench, "127.0.0.1", new_token=True)
    assert seen == [0o600]
    assert bench.common_config_path.stat().st_mode & 0o777 == 0o600


def test_frappes_own_keys_are_never_taken_for_typos_of_bench_jobs_keys() -> None:
    from bench_jobs.core.config_checks import likely_typos

    assert likely_typos({"db_password": "x", "db_name": "x", "encryption_key": "x"}) == []
    assert likely_typos({"rq_pasword": "x"}) == [("rq_pasword", "rq_password")]
