"""`manage.py bench risk` at a small size: it builds its history, measures every figure and
prints them as JSON (the figures are not judged here: a 5,000-order history on a shared test
machine says nothing about speed). Run as a subprocess, as people run it, on a bench database
of its own next to the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

pytestmark = pytest.mark.e2e

BASE = Path(settings.BASE_DIR)


def _bench_env(suffix: str) -> tuple[dict[str, str], str]:
    """The environment for the command: DATABASE_URL names a database of this test's own, so
    the bench database it drops and re-creates is `<that>_bench`; no Redis (the ingest's
    on-commit rounds go to Celery's in-memory broker instead of someone's queue)."""
    url = urlsplit(os.environ["DATABASE_URL"])
    name = f"{url.path.lstrip('/')}_{suffix}"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_TASK_ALWAYS_EAGER")}
    env["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{name}"))
    env.setdefault("DJANGO_SECRET_KEY", "test-only-secret")
    return env, f"{name}_bench"


def _bench(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "bench", "risk", *args],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _database_exists(name: str) -> bool:
    url = urlsplit(os.environ["DATABASE_URL"])
    with psycopg.connect(
        dbname="postgres",
        user=url.username or "postgres",
        password=url.password,
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        autocommit=True,
    ) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _drop_database(name: str) -> None:
    url = urlsplit(os.environ["DATABASE_URL"])
    with psycopg.connect(
        dbname="postgres",
        user=url.username or "postgres",
        password=url.password,
        host=url.hostname or "127.0.0.1",
        port=url.port or 5432,
        autocommit=True,
    ) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_bench_risk_small_history_prints_every_figure():
    env, bench_db = _bench_env("riskbench")
    try:
        done = _bench(
            "--history", "5000", "--runs", "1", "--samples", "40", "--ingest-orders", "300", "--json", env=env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)

        assert result["benchmark"] == "risk"
        assert result["history"]["orders"] == 5000
        assert result["history"]["customers"] == 1000
        assert result["history"]["decided_reviews"] > 0
        assert result["history"]["active_rules"] >= 10
        # Screening: 40 single-order ingests timed, each sending a handful of queries.
        assert result["screen_samples"] == 40
        assert 0 < result["screen_p50_ms"] <= result["screen_p99_ms"] <= result["screen_max_ms"]
        assert result["screen_queries_per_order"] >= 1
        assert 0 < result["baseline_roundtrips_p50_ms"] <= result["baseline_roundtrips_p99_ms"]
        assert result["single_ingest_on_p50_ms"] > 0 and result["single_ingest_off_p50_ms"] > 0
        # The screened orders collide with the history: some hit a rule and some are held.
        assert 0 < result["hit_share"] < 1
        assert 0 < result["quarantined_share"] <= result["hit_share"]
        # Ingest with and without screening, 300 orders each way in deliveries of 100.
        assert result["parameters"]["ingest_orders_per_pass"] == 300
        assert result["ingest_on_orders_per_s"] > 0 and result["ingest_off_orders_per_s"] > 0
        assert result["ingest_overhead_ratio"] == pytest.approx(
            result["ingest_on_orders_per_s"] / result["ingest_off_orders_per_s"], abs=0.002
        )
        # The dry run over the window (all 5,000 orders here), both rules.
        assert result["dry_run_window_orders"] == 5000
        assert set(result["dry_run"]) == {"ip_velocity", "composite"}
        for figures in result["dry_run"].values():
            assert figures["scanned"] == 5000
            assert figures["seconds"] > 0
        assert result["dry_run"]["ip_velocity"]["flagged"] > 0  # the history's bursts
        assert result["dry_run_100k_s"] == max(d["seconds"] for d in result["dry_run"].values())
        assert set(result["meets"]) == {"screen_p99_ms", "ingest_overhead_ratio", "dry_run_100k_s"}
        # What was screened was written: every sample and pass order, and the warm-up ones.
        assert result["history"]["orders_after_runs"] == 5000 + 2 * 40 + 2 * 300 + 2 * 4
    finally:
        _drop_database(bench_db)


def test_bench_risk_refuses_a_history_too_small_and_writes_nothing():
    env, bench_db = _bench_env("riskbench_bad")
    _drop_database(bench_db)

    done = _bench("--history", "10", "--runs", "1", env=env)

    assert done.returncode != 0
    assert "--history" in done.stderr
    assert not _database_exists(bench_db)


def test_bench_risk_refuses_sqlite():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}

    done = _bench("--history", "5000", "--runs", "1", env=env)

    assert done.returncode != 0
    assert "DATABASE_URL" in done.stderr
