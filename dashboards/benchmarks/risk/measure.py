"""One run of the risk benchmark: the dry runs, screening timed inside single-order ingests
beside as many bare round trips, and ingest throughput with screening and without."""

from __future__ import annotations

import cProfile
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from dashboards.benchmarks.common import profile_text
from dashboards.benchmarks.risk.world import DRY_RUN_WINDOW, INGEST_BATCH, SEED, Payloads, World


@dataclass
class Clock:
    """Time spent inside DoorScreening's two steps, and the queries sent from them."""

    seconds: float = 0.0
    queries: int = 0
    inside: bool = False


# --- Measuring -----------------------------------------------------------------------------
@contextmanager
def timed_screening() -> Iterator[Clock]:
    """Time (and count the queries of) DoorScreening's two steps wherever ingest calls them."""
    from riskcontrol.services import DoorScreening

    clock = Clock()
    originals = DoorScreening.before_insert, DoorScreening.after_insert

    def timed(step):
        def wrapper(self, *args, **kwargs):
            clock.inside = True
            started = time.perf_counter()
            try:
                return step(self, *args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - started
                clock.inside = False

        return wrapper

    def count(execute, sql, params, many, context):
        if clock.inside:
            clock.queries += 1
        return execute(sql, params, many, context)

    DoorScreening.before_insert = timed(originals[0])
    DoorScreening.after_insert = timed(originals[1])
    try:
        with connection.execute_wrapper(count):
            yield clock
    finally:
        DoorScreening.before_insert, DoorScreening.after_insert = originals


def ingest(payloads: list[dict]) -> list:
    from orders.actors import system_actor
    from orders.services import order_ingest_batch

    results = order_ingest_batch(payloads=payloads, actor=system_actor("bench"))
    bad = [r.as_dict() for r in results if r.status != "created"]
    if bad or len(results) != len(payloads):
        raise CommandError(f"ingest did not create every order: {bad[:3]}")
    return results


def one_run(
    run_no: int,
    *,
    world: World,
    samples: int,
    ingest_orders: int,
    days: int,
    log: Callable,
) -> dict:
    out: dict = {"run": run_no, "dry_run": _dry_runs(days)}
    log(
        "  dry run: "
        + ", ".join(
            f"{k} {v['seconds']:.2f} s ({v['scanned']:,} scanned, {v['flagged']:,} flagged)"
            for k, v in out["dry_run"].items()
        )
    )
    gen = Payloads(world, seed=SEED + run_no)
    out["channel_usual_uncached_ms"] = _channel_usual_ms(world)
    # Warm-up, one order per channel each way: the address table, the phone geocoder and each
    # channel's usual amount (kept per process for ten minutes) are loaded once per process.
    for code in world.channel_codes:
        for on in (True, False):
            payload = gen.make(f"W{run_no}-{code}-{int(on)}")
            payload["channel"] = code
            with override_settings(RISK_SCREENING=on):
                ingest([payload])

    screen_ms, on_ms, off_ms, queries, floor_ms, hit = [], [], [], [], [], []
    with timed_screening() as clock:
        for i in range(samples):
            for on in (i % 2 == 0, i % 2 != 0):
                payload = gen.make(f"S{run_no}-{'on' if on else 'off'}-{i:05d}")
                before_s, before_q = clock.seconds, clock.queries
                with override_settings(RISK_SCREENING=on):
                    started = time.perf_counter()
                    stored = ingest([payload])[0].order
                    elapsed = (time.perf_counter() - started) * 1000
                if on:
                    hit.append(stored.risk_score > 0)
                    on_ms.append(elapsed)
                    screen_ms.append((clock.seconds - before_s) * 1000)
                    queries.append(clock.queries - before_q)
                    floor_ms.append(_round_trips_ms(clock.queries - before_q))
                else:
                    off_ms.append(elapsed)
    out["screen_ms"] = [round(v, 3) for v in screen_ms]
    out["screen_hit"] = (
        hit  # whether that order hit a rule (so after_insert wrote hits, and a review if held)
    )
    out["single_ingest_on_ms"] = [round(v, 3) for v in on_ms]
    out["single_ingest_off_ms"] = [round(v, 3) for v in off_ms]
    out["roundtrips_ms"] = [round(v, 3) for v in floor_ms]
    out["screen_queries_per_order"] = statistics.median(queries) if queries else None
    out["screen_p50_ms"] = percentile(screen_ms, 50)
    out["screen_p99_ms"] = percentile(screen_ms, 99)
    log(f"  screening one order: p50 {out['screen_p50_ms']:.2f} ms, p99 {out['screen_p99_ms']:.2f} ms")

    # Each way's orders in up to 4 segments, run ABBA (on off off on …, starting with off in
    # even runs) so that drift on a shared machine falls on both sides alike.
    segments = max(1, min(4, ingest_orders // INGEST_BATCH))
    first = run_no % 2 == 1
    plan = [first, not first, not first, first] * ((segments + 1) // 2)
    payloads = {
        on: [gen.make(f"T{run_no}-{'on' if on else 'off'}-{i:06d}") for i in range(ingest_orders)]
        for on in (True, False)
    }
    bounds = [round(k * ingest_orders / segments) for k in range(segments + 1)]
    seconds = {True: 0.0, False: 0.0}
    screened = 0.0
    done = {True: 0, False: 0}
    rates: dict[str, list[float]] = {"on": [], "off": []}
    with timed_screening() as clock:
        for on in plan[: 2 * segments]:
            part = payloads[on][bounds[done[on]] : bounds[done[on] + 1]]
            done[on] += 1
            before = clock.seconds
            with override_settings(RISK_SCREENING=on):
                started = time.perf_counter()
                for start in range(0, len(part), INGEST_BATCH):
                    ingest(part[start : start + INGEST_BATCH])
                elapsed = time.perf_counter() - started
            seconds[on] += elapsed
            screened += clock.seconds - before
            rates["on" if on else "off"].append(round(len(part) / elapsed, 1))
    out["ingest_on_orders_per_s"] = round(ingest_orders / seconds[True], 1)
    out["ingest_off_orders_per_s"] = round(ingest_orders / seconds[False], 1)
    out["ingest_overhead_ratio"] = round(out["ingest_on_orders_per_s"] / out["ingest_off_orders_per_s"], 3)
    out["ingest_segments_orders_per_s"] = rates
    out["screen_ms_per_order_in_batches"] = round(screened * 1000 / ingest_orders, 3)
    out["ingest_first_pass"] = "on" if first else "off"
    out |= _outcomes(run_no)
    log(
        f"  ingest {out['ingest_on_orders_per_s']:,.0f}/s with screening, {out['ingest_off_orders_per_s']:,.0f}/s "
        f"without: ratio {out['ingest_overhead_ratio']:.3f}; of {out['screened_orders']:,} screened orders "
        f"{out['hit_share']:.1%} hit a rule, {out['quarantined_share']:.1%} held"
    )
    return out


def _round_trips_ms(count: int) -> float:
    """The floor under a screening that sent `count` queries: as many `SELECT 1` round trips."""
    with connection.cursor() as cursor:
        started = time.perf_counter()
        for _ in range(count):
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return (time.perf_counter() - started) * 1000


def _channel_usual_ms(world: World) -> float | None:
    """One uncached computation of the largest channel's usual amount, which screening keeps
    per process for ten minutes: the order that finds it expired pays this."""
    from orders.models import Channel
    from riskcontrol import selectors as sel

    if not hasattr(sel, "channel_usual_amount") or not hasattr(sel, "clear_caches"):
        return None
    channel = Channel.objects.get(code=world.channel_codes[0])
    sel.clear_caches()
    started = time.perf_counter()
    sel.channel_usual_amount(channel.pk)
    return round((time.perf_counter() - started) * 1000, 2)


def _outcomes(run_no: int) -> dict:
    """What screening made of this run's screened orders (the single ones and the deliveries)."""
    from django.db.models import Count, Q

    from orders.models import Order
    from riskcontrol.models import RuleHit

    screened = Q(external_id__startswith=f"S{run_no}-on-") | Q(external_id__startswith=f"T{run_no}-on-")
    rows = Order.objects.filter(screened)
    total = rows.count()
    hit = rows.filter(risk_score__gt=0).count()
    held = rows.filter(stage="quarantined").count()
    kinds = RuleHit.objects.filter(order__in=rows).values_list("kind").annotate(n=Count("id")).order_by("-n")
    return {
        "screened_orders": total,
        "hit_share": round(hit / total, 4) if total else 0.0,
        "quarantined_share": round(held / total, 4) if total else 0.0,
        "hits_by_rule_kind": dict(kinds),
    }


def dry_run_days() -> tuple[int, int]:
    """The fewest whole days whose window holds DRY_RUN_WINDOW orders (or all of them)."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT received_at FROM orders_order ORDER BY received_at DESC OFFSET %s LIMIT 1",
            [DRY_RUN_WINDOW - 1],
        )
        row = cursor.fetchone()
        if row is None:
            cursor.execute("SELECT min(received_at) FROM orders_order")
            row = cursor.fetchone()
        days = max(1, math.ceil((now - row[0]).total_seconds() / 86400))
        cursor.execute(
            "SELECT count(*) FROM orders_order WHERE received_at >= %s", [now - timedelta(days=days)]
        )
        return days, cursor.fetchone()[0]


def _dry_runs(days: int) -> dict:
    """The default IP-velocity rule and the default composite rule over the window."""
    from riskcontrol.dryrun import rule_dry_run
    from riskcontrol.models import Rule

    out = {}
    for kind in ("ip_velocity", "composite"):
        rule = Rule.objects.filter(kind=kind).order_by("pk").first()
        started = time.perf_counter()
        result = rule_dry_run(kind=rule.kind, params=rule.params, days=days, samples=20)
        seconds = time.perf_counter() - started
        out[kind] = {
            "seconds": round(seconds, 3),
            "reported_seconds": result.elapsed_s,  # the dry run's own timer
            "scanned": result.scanned,
            "flagged": result.flagged,
            "confirmed": result.confirmed,
            "false_positives": result.false_positives,
            "samples": len(result.samples),
        }
    return out


def profile_ingest(world: World, count: int) -> dict:
    """cProfile of `count` single-order ingests with screening on."""
    gen = Payloads(world, seed=SEED - 1)
    payloads = [gen.make(f"P-{i:05d}") for i in range(count)]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    with timed_screening() as clock:
        profiler.enable()
        for payload in payloads:
            ingest([payload])
        profiler.disable()
    seconds = time.perf_counter() - started
    return {
        "orders": count,
        "seconds_profiled": round(seconds, 3),
        "screen_seconds_profiled": round(clock.seconds, 3),
        "text": profile_text(profiler, cumulative=45, tottime=30),
    }


def percentile(values: list[float], p: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[p - 1], 3)


def median_of(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None
