"""Finding the bench and choosing sites (DESIGN 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_jobs.core.bench import Bench, find_bench, validate_site_name
from bench_jobs.errors import EXIT_USAGE, ConfigError


def test_bench_is_found_by_flag_then_env_then_walking_up(bench: Bench, tmp_path: Path) -> None:
    nested = bench.root / "apps" / "sample_app"
    assert find_bench(cwd=nested, env={}).root == bench.root
    assert find_bench(str(bench.root), cwd=tmp_path, env={}).root == bench.root
    assert find_bench(cwd=tmp_path, env={"BENCH_JOBS_BENCH": str(bench.root)}).root == bench.root


def test_no_bench_is_a_usage_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        find_bench(cwd=tmp_path, env={})
    assert caught.value.exit_code == EXIT_USAGE
    assert "bench-jobs init" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="is not a bench"):
        find_bench(str(tmp_path), env={})


def test_site_comes_from_flag_then_env_then_currentsite(bench: Bench) -> None:
    assert bench.resolve_sites("beta.test", env={"BENCH_JOBS_SITE": "alpha.test"}) == ["beta.test"]
    assert bench.resolve_sites(None, env={"BENCH_JOBS_SITE": "alpha.test"}) == ["alpha.test"]
    (bench.sites_dir / "currentsite.txt").write_text("beta.test\n")
    assert bench.resolve_sites(None, env={}) == ["beta.test"]


def test_site_all_means_every_site_in_name_order(bench: Bench) -> None:
    (bench.sites_dir / "not-a-site").mkdir()
    assert bench.resolve_sites("all", env={}) == ["alpha.test", "beta.test"]


def test_no_site_selected_says_how_to_choose_one(bench: Bench) -> None:
    with pytest.raises(ConfigError, match="No site selected") as caught:
        bench.resolve_sites(None, env={})
    assert "--site" in (caught.value.hint or "")


def test_unknown_site_lists_the_known_ones(bench: Bench) -> None:
    with pytest.raises(ConfigError, match=r"Unknown site 'gamma\.test'") as caught:
        bench.resolve_sites("gamma.test", env={})
    assert "alpha.test, beta.test" in (caught.value.hint or "")


@pytest.mark.parametrize("name", ["../etc", "..", "a/b", "/etc", ".hidden", "a..b", "all", "", "site name"])
def test_unsafe_site_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="Invalid site name"):
        validate_site_name(name)


@pytest.mark.parametrize("name", ["site1.local", "shop.example.com", "A-1_b"])
def test_ordinary_site_names_are_accepted(name: str) -> None:
    assert validate_site_name(name) == name
