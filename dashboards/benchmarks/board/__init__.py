"""`manage.py bench board`: the live board's speed, on PostgreSQL and Redis, in the database the
bench command prepared (`<name>_bench`, re-created and migrated).

- render.py: `board_ms_5000`, `board_queries_5000` (the board page with 5,000 open orders, and
  the re-read, next page and counts requests beside it; baseline: a bare SELECT of 50 rows);
- push.py: `push_p50_ms`, `push_p99_ms` (a committed stage change to its message at a board
  socket on real daphne and Redis; baseline: a bare group_send to the same socket);
- overdue.py, when present: `overdue_scan_ms_1m` (one pass of the overdue ladder over
  `--history` orders).

They run in that order: the render counts exactly the orders it wrote, and the overdue scan's
million orders come last so they weigh on no other figure."""

from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable

from django.db import connection

from dashboards.benchmarks.board.push import TARGET_P99_MS, measure_push
from dashboards.benchmarks.board.render import TARGET_MS, TARGET_QUERIES, measure_render
from dashboards.benchmarks.common import git_commit, machine

TARGETS = {"push_p99_ms": TARGET_P99_MS, "board_ms_5000": TARGET_MS, "board_queries_5000": TARGET_QUERIES}


def has_overdue_bench() -> bool:
    return importlib.util.find_spec("dashboards.benchmarks.board.overdue") is not None


def run(
    *,
    runs: int,
    samples: int,
    open_orders: int,
    history: int,
    bench_db: str,
    env: dict[str, str],
    log: Callable,
) -> dict:
    started = time.perf_counter()
    load_before = os.getloadavg()
    result: dict = {
        "benchmark": "board",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(sys.argv),
        "git_commit": git_commit(),
    }
    result.update(measure_render(open_orders=open_orders, runs=runs, log=log))
    result.update(measure_push(samples=samples, env=env, log=log))
    meets = {
        "board_ms_5000": result["board_ms_5000"] < TARGET_MS,
        "board_queries_5000": result["board_queries_5000"] <= TARGET_QUERIES,
        "push_p99_ms": result["push_p99_ms"] is not None and result["push_p99_ms"] < TARGET_P99_MS,
    }
    targets = dict(TARGETS)
    if has_overdue_bench():
        from dashboards.benchmarks.board.overdue import measure_overdue_scan

        overdue = measure_overdue_scan(total=history, overdue=min(1_000, history // 10), runs=runs, log=log)
        result["overdue_scan_ms_1m"] = overdue["overdue_scan_ms_1m"]
        result["overdue_scan"] = overdue
        targets["overdue_scan_ms_1m"] = overdue["target_ms"]
        meets["overdue_scan_ms_1m"] = overdue["meets_target"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    load_after = os.getloadavg()
    result.update(
        targets=targets,
        meets=meets,
        meets_targets=all(meets.values()),
        parameters={
            "runs": runs,
            "push_samples": samples,
            "open_orders": open_orders,
            "history": history if has_overdue_bench() else None,
            "database": bench_db,
        },
        machine={
            **machine(pg_version),
            "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
            "node": platform.node(),
        },
        wall_seconds=round(time.perf_counter() - started, 1),
    )
    return result


def table(result: dict) -> str:
    """The summary for people."""

    def verdict(key: str) -> str:
        return "met" if result["meets"].get(key) else "MISSED"

    def num(value, fmt: str = "{:.2f}") -> str:
        return "—" if value is None else fmt.format(value)

    lines = [
        f"Board benchmark ({result['machine']['cpus']} CPUs, PostgreSQL {result['machine']['postgresql']}, "
        f"commit {result['git_commit'] or 'unknown'}, load {result['machine']['load_average_1min']['before']})",
        f"command: {result['command']}",
        "",
        f"{'figure':<40} {'value':>10}   {'target / baseline':<36} verdict",
        f"{'board_ms_5000 (GET /board/)':<40} {num(result['board_ms_5000']):>10}   "
        f"{'< ' + format(TARGET_MS, '.0f') + ' ms':<36} {verdict('board_ms_5000')}",
        f"{'board_queries_5000':<40} {result['board_queries_5000']:>10}   "
        f"{'≤ ' + str(TARGET_QUERIES):<36} {verdict('board_queries_5000')}",
        f"{'  re-read on connect (GET /api/board/)':<40} {num(result['reread_ms_5000']):>10}   "
        f"{str(result['reread_queries_5000']) + ' queries':<36}",
        f"{'  next page of a column':<40} {num(result['next_page_ms']):>10}   "
        f"{str(result['next_page_queries']) + ' queries':<36}",
        f"{'  counts':<40} {num(result['counts_ms']):>10}   {str(result['counts_queries']) + ' queries':<36}",
        f"{'  baseline: bare SELECT of 50 rows':<40} {num(result['baseline_select50_ms'], '{:.3f}'):>10}",
        f"{'push_p50_ms':<40} {num(result['push_p50_ms']):>10}   "
        f"{num(result['baseline_group_send_p50_ms'], '{:.2f} ms bare group_send p50'):<36}",
        f"{'push_p99_ms':<40} {num(result['push_p99_ms']):>10}   "
        f"{'< ' + format(TARGET_P99_MS, '.0f') + ' ms; bare ' + num(result['baseline_group_send_p99_ms']):<36} "
        f"{verdict('push_p99_ms')}",
        f"{'  samples; lost':<40} {result['push_samples']:>10}   {result['push_lost']!s:<36}",
    ]
    if "overdue_scan_ms_1m" in result:
        overdue = result["overdue_scan"]
        lines.append(
            f"{'overdue_scan_ms_1m':<40} {num(result['overdue_scan_ms_1m']):>10}   "
            f"{'< ' + format(overdue['target_ms'], '.0f') + ' ms; claim ' + num(overdue['claim_ms']):<36} "
            f"{verdict('overdue_scan_ms_1m')}"
        )
    return "\n".join(lines)
