"""`manage.py bench board` at a small size: it renders a board of 300 open orders, times 20
pushes through real daphne and Redis beside as many bare group sends, runs the overdue scan
over a small table, and prints every figure as JSON (the figures are not judged here: a tiny
board on a shared test machine says nothing about speed). Run as a subprocess, as people run
it, on a bench database of its own next to the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings

from tests.test_bench_risk import _database_exists, _drop_database

pytestmark = pytest.mark.e2e

BASE = Path(settings.BASE_DIR)


def _env(suffix: str) -> tuple[dict[str, str], str]:
    """DATABASE_URL names a database of this test's own, so the bench database the command
    drops and re-creates is `<that>_bench`; REDIS_URL stays (the push goes through Redis)."""
    url = urlsplit(os.environ["DATABASE_URL"])
    name = f"{url.path.lstrip('/')}_{suffix}"
    env = {k: v for k, v in os.environ.items() if k != "CELERY_TASK_ALWAYS_EAGER"}
    env["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{name}"))
    env.setdefault("DJANGO_SECRET_KEY", "test-only-secret")
    return env, f"{name}_bench"


def _bench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "bench", "board", *args],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_board_small_prints_every_figure():
    if not os.environ.get("REDIS_URL"):
        pytest.fail("bench board needs REDIS_URL: run it through `make test`")
    env, bench_db = _env("boardbench")
    try:
        done = _bench(
            "--open-orders", "300", "--runs", "1", "--samples", "20", "--history", "2000", "--json", env=env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)

        assert result["benchmark"] == "board"
        # The render: every open order counted, six columns' first pages, the page's queries
        assert sum(v for k, v in result["counts"].items() if k != "done") == 300
        assert result["counts"]["done"] == 30  # a tenth as many done in the last day
        assert result["cards_on_first_pages"] == sum(min(n, 50) for n in result["counts"].values())
        assert result["board_ms_5000"] > 0 and 0 < result["board_queries_5000"] <= 15
        assert result["reread_queries_5000"] > 0 and result["next_page_ms"] > 0 and result["counts_ms"] > 0
        assert result["baseline_select50_ms"] > 0
        # The push: every change and every bare send arrived, and the product path is timed
        assert result["push_samples"] == 20
        assert result["push_lost"] == {"product": 0, "baseline": 0}
        assert 0 < result["push_p50_ms"] <= result["push_p99_ms"] <= result["push_max_ms"]
        assert 0 < result["baseline_group_send_p50_ms"] <= result["baseline_group_send_p99_ms"]
        assert result["channel_layer_capacity"] == 2000
        # The overdue scan over the small history, and the verdicts of every figure
        assert result["overdue_scan"]["parameters"]["total_orders"] == 2000
        assert result["overdue_scan_ms_1m"] > 0
        assert set(result["meets"]) == {
            "board_ms_5000",
            "board_queries_5000",
            "push_p99_ms",
            "overdue_scan_ms_1m",
        }
        assert result["meets_targets"] == all(result["meets"].values())
    finally:
        _drop_database(bench_db)


def test_bench_board_refuses_bad_sizes_and_writes_nothing():
    env, bench_db = _env("boardbench_bad")
    _drop_database(bench_db)

    done = _bench("--open-orders", "10", "--runs", "1", env=env)

    assert done.returncode != 0
    assert "--open-orders" in done.stderr
    assert not _database_exists(bench_db)


def test_bench_board_refuses_without_redis():
    env, bench_db = _env("boardbench_noredis")
    env.pop("REDIS_URL", None)
    _drop_database(bench_db)

    done = _bench("--runs", "1", env=env)

    assert done.returncode != 0
    assert "REDIS_URL" in done.stderr
    assert not _database_exists(bench_db)
