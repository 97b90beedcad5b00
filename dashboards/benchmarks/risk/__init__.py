"""`manage.py bench risk`: what risk control costs at the door and in the dry run, on a year of
order history (1,000,000 orders by default) in PostgreSQL, with every rule type switched on.

It runs in the database `bench` prepared (`<name>_bench`, re-created, migrated). The history is
written server-side (`history.py`: `INSERT … SELECT generate_series`, indexes and constraints
built after the load), then vacuumed and analysed as a live database would be. The figures:

- `screen_p50_ms`, `screen_p99_ms`: screening timed directly where it runs. Orders go through
  the real ingest path, `order_ingest_batch([payload])`, one order per call (the worst case:
  every per-batch query is paid by one order), and a timer wraps the two `DoorScreening` steps
  `_store_valid` calls, `before_insert` (rules, thresholds, history counts, blacklist and
  customer look-ups, evaluation) and `after_insert` (hits, audit lines, and for held orders the
  review, its pool entry and the alert). So the orders are exactly the ones ingest builds and
  the figure is screening alone, not the noise of a whole ingest. Percentiles are over every
  sample of every run together (a p99 of a few hundred samples per run would be one sample),
  and split by whether the order hit a rule. Beside it, in the same run: as many bare
  `SELECT 1` round trips as that screening sent (the floor its query count sets), and
  single-order ingests with screening switched off (`RISK_SCREENING=False`) interleaved with
  the screened ones, so the whole-ingest difference can be compared with the timer's figure.
- `ingest_overhead_ratio`: orders/s through `order_ingest_batch` in deliveries of 100 with
  screening, divided by orders/s without, in the same run: each way's orders in four segments
  run ABBA (on off off on …, off first in even runs) so drift on a shared machine falls on both
  sides; the median of the runs' ratios.
- `dry_run_100k_s`: `riskcontrol.dryrun.rule_dry_run` of the default IP-velocity rule and of the
  default composite rule over the last `days` days, `days` chosen as the fewest whole days whose
  window holds 100,000 orders of the history (all of it when it is smaller); the slower of the
  two, median over runs.

The screened orders (`world.Payloads`) collide with the history as live traffic does: about
two thirds from returning customers (their phone, home IP, device and card), a third from new
accounts (a fifth of them days old, a quarter with a coupon), and about one in twelve shares
one of the hot IPs, devices or cards the history holds, pays a round amount with no note, ships
to a transit warehouse or carries a blacklisted value.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection

from dashboards.benchmarks.common import enqueue_for_real, git_commit, machine
from dashboards.benchmarks.risk.history import build_history, burst_count
from dashboards.benchmarks.risk.measure import dry_run_days, median_of, one_run, percentile, profile_ingest
from dashboards.benchmarks.risk.world import BURST_SIZE, INGEST_BATCH, World

TARGETS = {"screen_p99_ms": 10.0, "ingest_overhead_ratio": 0.7, "dry_run_100k_s": 10.0}


def run(
    *, runs: int, history: int, samples: int, ingest_orders: int, bench_db: str, profile: int, log: Callable
) -> dict:
    """Build the history, then measure `runs` times; medians and raw numbers per run."""
    from config.celery import app as celery_app

    started = time.perf_counter()
    load_before = os.getloadavg()
    with enqueue_for_real(celery_app):
        world = build_history(history=history, log=log)
        days, window = dry_run_days()
        log(f"Dry-run window: {days} days hold {window:,} orders")
        per_run = []
        for run_no in range(1, runs + 1):
            log(f"Run {run_no} of {runs} …")
            per_run.append(
                one_run(
                    run_no, world=world, samples=samples, ingest_orders=ingest_orders, days=days,
                    log=log,
                )
            )  # fmt: skip
        result = _summary(
            per_run, world=world, bench_db=bench_db, days=days, window=window, ingest_orders=ingest_orders
        )
        if profile:
            log(f"Profiling {profile} single-order ingests with screening …")
            result["profile"] = profile_ingest(world, profile)
        if os.environ.get("REDIS_URL"):
            celery_app.control.purge()  # the on-commit matching rounds nobody consumed
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_average_1min"] = {
        "before": round(load_before[0], 2),
        "after": round(os.getloadavg()[0], 2),
    }
    return result


def _summary(
    per_run: list[dict], *, world: World, bench_db: str, days: int, window: int, ingest_orders: int
) -> dict:
    screen = [v for r in per_run for v in r["screen_ms"]]
    floor = [v for r in per_run for v in r["roundtrips_ms"]]
    clean = [v for r in per_run for v, h in zip(r["screen_ms"], r["screen_hit"], strict=True) if not h]
    flagged = [v for r in per_run for v, h in zip(r["screen_ms"], r["screen_hit"], strict=True) if h]
    on_ms = [v for r in per_run for v in r["single_ingest_on_ms"]]
    off_ms = [v for r in per_run for v in r["single_ingest_off_ms"]]
    on_rate = median_of([r["ingest_on_orders_per_s"] for r in per_run])
    off_rate = median_of([r["ingest_off_orders_per_s"] for r in per_run])
    # Each run's ratio compares passes made side by side; the figure is their median.
    ratio = median_of([r["ingest_overhead_ratio"] for r in per_run])
    dry = {}
    for kind in per_run[0]["dry_run"]:
        runs = [r["dry_run"][kind] for r in per_run]
        dry[kind] = {key: median_of([x[key] for x in runs]) for key in runs[0] if key != "samples"}
    dry_s = max(d["seconds"] for d in dry.values())
    p99 = percentile(screen, 99)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
        cursor.execute(
            "SELECT (SELECT count(*) FROM orders_order), (SELECT count(*) FROM riskcontrol_review), "
            "(SELECT count(*) FROM riskcontrol_blacklistentry), (SELECT count(*) FROM riskcontrol_rule WHERE is_active)"
        )
        orders_now, reviews_now, blacklist, rules = cursor.fetchone()
    meets = {
        "screen_p99_ms": p99 is not None and p99 < TARGETS["screen_p99_ms"],
        "ingest_overhead_ratio": ratio >= TARGETS["ingest_overhead_ratio"],
        "dry_run_100k_s": dry_s < TARGETS["dry_run_100k_s"],
    }
    return {
        "benchmark": "risk",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(sys.argv),
        "git_commit": git_commit(),
        "risk_source_digest": _source_digest(),
        "screen_p50_ms": percentile(screen, 50),
        "screen_p99_ms": p99,
        "screen_max_ms": round(max(screen), 3) if screen else None,
        "screen_samples": len(screen),
        "screen_measured": "DoorScreening.before_insert + after_insert inside order_ingest_batch([one order])",
        "screen_clean_p50_ms": percentile(clean, 50),
        "screen_clean_p99_ms": percentile(clean, 99),
        "screen_hit_p50_ms": percentile(flagged, 50),
        "screen_hit_p99_ms": percentile(flagged, 99),
        "screen_hit_samples": len(flagged),
        "screen_queries_per_order": median_of([r["screen_queries_per_order"] for r in per_run]),
        "baseline_roundtrips_p50_ms": percentile(floor, 50),
        "baseline_roundtrips_p99_ms": percentile(floor, 99),
        "baseline_roundtrips_measured": "as many SELECT 1 round trips as that screening sent, right after it",
        "channel_usual_uncached_ms": median_of([r["channel_usual_uncached_ms"] for r in per_run]),
        "screen_ms_per_order_in_batches_of_100": median_of(
            [r["screen_ms_per_order_in_batches"] for r in per_run]
        ),
        "single_ingest_on_p50_ms": percentile(on_ms, 50),
        "single_ingest_off_p50_ms": percentile(off_ms, 50),
        "single_ingest_on_p99_ms": percentile(on_ms, 99),
        "single_ingest_off_p99_ms": percentile(off_ms, 99),
        "single_ingest_difference_p50_ms": round(percentile(on_ms, 50) - percentile(off_ms, 50), 3)
        if on_ms
        else None,
        "hit_share": median_of([r["hit_share"] for r in per_run]),
        "hits_by_rule_kind": dict(
            sum((Counter(r["hits_by_rule_kind"]) for r in per_run), Counter()).most_common()
        ),
        "quarantined_share": median_of([r["quarantined_share"] for r in per_run]),
        "ingest_overhead_ratio": ratio,
        "ingest_overhead_ratio_of_medians": round(on_rate / off_rate, 3),
        "ingest_on_orders_per_s": on_rate,
        "ingest_off_orders_per_s": off_rate,
        "dry_run_100k_s": dry_s,
        "dry_run": dry,
        "dry_run_days": days,
        "dry_run_window_orders": window,
        "targets": TARGETS,
        "meets": meets,
        "meets_targets": all(meets.values()),
        "runs": [
            {
                k: v
                for k, v in r.items()
                if k not in ("screen_ms", "single_ingest_on_ms", "single_ingest_off_ms")
            }
            for r in per_run
        ],
        "history": {
            "orders": world.history,
            "customers": world.customers,
            "burst_orders": burst_count(world) * BURST_SIZE,
            "decided_reviews": world.decided_reviews,
            "reviews_after_runs": reviews_now,
            "blacklist_entries": blacklist,
            "active_rules": rules,
            "orders_after_runs": orders_now,
            "build_seconds": world.build_seconds,
        },
        "parameters": {
            "runs": len(per_run),
            "samples_per_run": len(per_run[0]["screen_ms"]),
            "ingest_orders_per_pass": ingest_orders,
            "deliveries_of": INGEST_BATCH,
            "database": bench_db,
        },
        "machine": machine(pg_version),
    }


def _source_digest() -> str:
    """A short hash of the code measured (riskcontrol/ and the ingest service)."""

    base = Path(settings.BASE_DIR)
    files = [*sorted((base / "riskcontrol").rglob("*.py")), base / "orders" / "services.py"]
    digest = hashlib.sha256()
    for path in files:
        if "tests" not in path.parts and "migrations" not in path.parts:
            digest.update(path.relative_to(base).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def table(result: dict) -> str:
    """The summary for people."""

    def verdict(key: str) -> str:
        return "met" if result["meets"][key] else "MISSED"

    def num(value, fmt: str) -> str:
        return "—" if value is None else fmt.format(value)

    h = result["history"]
    lines = [
        f"Risk benchmark: {result['parameters']['runs']} runs, {h['orders']:,} orders of history, "
        f"{h['customers']:,} customers ({result['machine']['cpus']} CPUs, PostgreSQL "
        f"{result['machine']['postgresql']}, commit {result['git_commit'] or 'unknown'}, load average "
        f"{result['machine'].get('load_average_1min', {}).get('before', '?')})",
        f"command: {result['command']}",
        f"history built in {sum(h['build_seconds'].values()):.1f} s {h['build_seconds']}",
        "",
        f"{'figure':<44} {'value':>12}   {'target / baseline':<34} verdict",
        f"{'screen_p50_ms (one order per ingest call)':<44} {num(result['screen_p50_ms'], '{:.2f}'):>12}   {'':<34}",
        f"{'screen_p99_ms':<44} {num(result['screen_p99_ms'], '{:.2f}'):>12}   "
        f"{'< ' + format(TARGETS['screen_p99_ms'], '.0f') + ' ms':<34} {verdict('screen_p99_ms')}",
        f"{'  max; samples; queries per order':<44} {num(result['screen_max_ms'], '{:.2f}'):>12}   "
        f"{str(result['screen_samples']) + ' samples, ' + str(result['screen_queries_per_order']) + ' queries':<34}",
        f"{'  orders hitting no rule, p50 / p99':<44} {num(result['screen_clean_p50_ms'], '{:.2f}'):>12}   "
        f"{num(result['screen_clean_p99_ms'], '{:.2f} ms p99'):<34}",
        f"{'  orders hitting a rule, p50 / p99':<44} {num(result['screen_hit_p50_ms'], '{:.2f}'):>12}   "
        f"{num(result['screen_hit_p99_ms'], '{:.2f} ms p99'):<34}",
        f"{'  baseline: that many SELECT 1, p50 / p99':<44} {num(result['baseline_roundtrips_p50_ms'], '{:.2f}'):>12}   "
        f"{num(result['baseline_roundtrips_p99_ms'], '{:.2f} ms p99'):<34}",
        f"{'  channel usual amount, uncached (10 min)':<44} {num(result['channel_usual_uncached_ms'], '{:.1f}'):>12}   "
        f"{'ms, once per channel per process':<34}",
        f"{'  single-order ingest p50, on / off':<44} {num(result['single_ingest_on_p50_ms'], '{:.2f}'):>12}   "
        f"{num(result['single_ingest_off_p50_ms'], '{:.2f} ms without screening'):<34}",
        f"{'  screening per order, deliveries of 100':<44} "
        f"{num(result['screen_ms_per_order_in_batches_of_100'], '{:.3f}'):>12}   {'':<34}",
        f"{'  screened orders hitting a rule / held':<44} {result['hit_share']:>12.1%}   "
        f"{format(result['quarantined_share'], '.1%') + ' held':<34}",
        f"{'  hits by rule type (all runs)':<44} {'':>12}   "
        + ", ".join(f"{k} {n}" for k, n in result["hits_by_rule_kind"].items()),
        f"{'ingest_overhead_ratio':<44} {result['ingest_overhead_ratio']:>12.3f}   "
        f"{'≥ ' + format(TARGETS['ingest_overhead_ratio'], '.1f'):<34} {verdict('ingest_overhead_ratio')}",
        f"{'  orders/s with / without screening':<44} {result['ingest_on_orders_per_s']:>12,.0f}   "
        f"{format(result['ingest_off_orders_per_s'], ',.0f') + ' without (baseline)':<34}",
        f"{'dry_run_100k_s (slower of two rules)':<44} {num(result['dry_run_100k_s'], '{:.2f}'):>12}   "
        f"{'< ' + format(TARGETS['dry_run_100k_s'], '.0f') + ' s':<34} "
        f"{verdict('dry_run_100k_s')}",
    ]
    for kind, d in result["dry_run"].items():
        lines.append(
            f"{'  ' + kind:<44} {d['seconds']:>12.2f}   {d['scanned']:,.0f} scanned, {d['flagged']:,.0f} flagged"
            + f", {d['confirmed']:,.0f} confirmed"
        )
    lines.append(f"  window: last {result['dry_run_days']} days, {result['dry_run_window_orders']:,} orders")
    if "profile" in result:
        lines += ["", result["profile"]["text"]]
    return "\n".join(lines)
