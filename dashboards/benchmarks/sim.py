"""`manage.py bench sim`: the simulator's speed and what the real engine achieves on a Double 11.

- `sim_10k_seconds`: the `double11` day (10,000 orders, 40 agents) simulated under `smart`,
  median over runs (seeds 1..runs), beside two same-run baselines: the time spent inside the
  engine's `plan_round` during that very simulation, and a bare `heapq` replay of as many events
  as the simulation processed (the floor of any discrete-event loop in Python).
- The outcomes of `smart` against `round_robin` (and `round_robin_filtered`) on the same days,
  medians over the seeds, with the issue's targets.
- The Erlang C check: one queue, Poisson arrivals, exponential work, round robin, no
  abandonment, against the formula.
No database is touched: scenarios are generated."""

from __future__ import annotations

import heapq
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from dashboards.benchmarks.common import git_commit, machine

TARGETS = {
    "sim_10k_seconds": 60.0,
    "smart_sla_breach_rate": 0.003,
    "breach_ratio_to_round_robin": 1 / 3,
    "smart_skill_match_rate": 0.95,
    "travel_ratio_to_round_robin": 0.6,
    "smart_accept_mean_minutes": 2.3,
}
POLICIES = ("smart", "round_robin", "round_robin_filtered")


def run(
    *, runs: int, log: Callable[[str], None], orders: int | None = None, erlang_arrivals: int = 100_000
) -> dict:
    """Every figure over `runs` seeds. `orders` scales the day down (the tests' smoke run); the
    figures in docs/benchmarks.md are of the whole day."""
    from dispatch.sim import run as sim_run
    from dispatch.sim.metrics import summarise
    from dispatch.sim.policies import builtin
    from dispatch.sim.scenarios import generate

    load_before = os.getloadavg()[0]
    per_run = []
    for seed in range(1, runs + 1):
        log(f"seed {seed} of {runs}: generating double11 …")
        started = time.perf_counter()
        scenario = generate("double11", seed=seed, orders=orders)
        generated = time.perf_counter() - started
        engine = _Timer(sim_run.plan_round)
        sim_run.plan_round = engine
        try:
            out: dict = {"seed": seed, "generate_seconds": round(generated, 3), "policies": {}}
            for name in POLICIES:
                engine.reset()
                started = time.perf_counter()
                outcome = sim_run.simulate(scenario, builtin(name), seed=seed)
                seconds = time.perf_counter() - started
                events = outcome.counters.events
                metrics = summarise(outcome)
                metrics.pop("per_agent")
                metrics.pop("series")
                out["policies"][name] = metrics | {
                    "seconds": round(seconds, 3),
                    "engine_seconds": round(engine.seconds, 3),
                    "engine_calls": engine.calls,
                    "events": events,
                }
                log(
                    f"  {name}: {seconds:.1f} s ({engine.seconds:.1f} s in plan_round, {engine.calls} rounds)"
                )
        finally:
            sim_run.plan_round = engine.wrapped
        smart = out["policies"]["smart"]
        out["sim_10k_seconds"] = smart["seconds"]
        out["baseline_heap_seconds"] = round(_heap_baseline(smart["events"]), 3)
        per_run.append(out)
    log(f"Erlang C check (c=3, ρ=0.5, {erlang_arrivals:,} arrivals) …")
    erlang = erlang_check(servers=3, utilisation=0.5, arrivals=erlang_arrivals, seed=7)
    return _summary(per_run, erlang, load_before)


class _Timer:
    """Wraps `plan_round` to add up the time the engine takes inside a simulation."""

    def __init__(self, wrapped: Callable) -> None:
        self.wrapped = wrapped
        self.reset()

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.wrapped(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1


def _heap_baseline(events: int) -> float:
    """Push and pop `events` tuples shaped like the simulation's through one heap, in order."""
    rng = np.random.default_rng(0)
    times = rng.uniform(0, 86400, size=events).tolist()
    started = time.perf_counter()
    heap: list = []
    for seq, at in enumerate(times):
        heapq.heappush(heap, (at, 3, seq, None))
    while heap:
        heapq.heappop(heap)
    return time.perf_counter() - started


def erlang_c(servers: int, offered: float) -> float:
    """Erlang C: the probability an arrival waits in an M/M/c queue with `offered` = λ/μ < c."""
    top = offered**servers / math.factorial(servers) * servers / (servers - offered)
    return top / (sum(offered**k / math.factorial(k) for k in range(servers)) + top)


def erlang_check(
    *, servers: int, utilisation: float, arrivals: int, seed: int, work_minutes: float = 10.0
) -> dict:
    """Simulate the M/M/c queue through the engine and compare with the formula."""
    from dispatch.sim.model import Behaviour, Scenario, SimAgent, SimOrder
    from dispatch.sim.policies import builtin
    from dispatch.sim.run import simulate

    mu = 1 / work_minutes
    lam = utilisation * servers * mu
    rng = np.random.default_rng(seed)
    ready = np.cumsum(rng.exponential(1 / lam, arrivals)) * 60
    work = rng.exponential(work_minutes, arrivals)
    horizon = float(ready[-1]) + 1
    instant = Behaviour(acceptance=1.0, response_median_seconds=0.0, response_sigma=0.0)
    scenario = Scenario(
        name="erlang",
        start=datetime(2026, 1, 1, tzinfo=UTC),
        horizon_seconds=horizon,
        orders=[
            SimOrder(
                id=i + 1, ready_seconds=float(ready[i]), due_seconds=math.inf, work_minutes=float(work[i])
            )
            for i in range(arrivals)
        ],
        agents=[
            SimAgent(
                id=j + 1, name=f"agent {j + 1}", capacity=1, shifts=((0.0, horizon * 2),), behaviour=instant
            )
            for j in range(servers)
        ],
    )
    started = time.perf_counter()
    outcome = simulate(scenario, builtin("round_robin"), seed=seed)
    seconds = time.perf_counter() - started
    waits = np.asarray([t.accepted_at - t.order.ready_seconds for t in outcome.tasks]) / 60
    p_wait = erlang_c(servers, lam / mu)
    mean_wait = p_wait / (servers * mu - lam)
    return {
        "servers": servers,
        "utilisation": utilisation,
        "arrivals": arrivals,
        "p_wait": round(float((waits > 1e-9).mean()), 4),
        "p_wait_formula": round(p_wait, 4),
        "mean_wait_minutes": round(float(waits.mean()), 4),
        "mean_wait_formula": round(mean_wait, 4),
        "p_wait_error": round(float((waits > 1e-9).mean()) / p_wait - 1, 4),
        "mean_wait_error": round(float(waits.mean()) / mean_wait - 1, 4),
        "seconds": round(seconds, 2),
    }


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 5) if present else None


def _summary(per_run: list[dict], erlang: dict, load_before: float) -> dict:
    def policy_median(name: str, *path: str) -> float | None:
        values = []
        for r in per_run:
            value = r["policies"][name]
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            values.append(value)
        return _median(values)

    quality = {
        name: {
            "sla_breach_rate": policy_median(name, "sla_breach_rate"),
            "accept_mean_minutes": policy_median(name, "accept_minutes", "mean"),
            "accept_p50_minutes": policy_median(name, "accept_minutes", "p50"),
            "accept_p90_minutes": policy_median(name, "accept_minutes", "p90"),
            "accept_p99_minutes": policy_median(name, "accept_minutes", "p99"),
            "skill_match_rate": policy_median(name, "skill_match_rate"),
            "mean_travel_km": policy_median(name, "mean_travel_km"),
            "utilisation": policy_median(name, "utilisation"),
            "load_gini": policy_median(name, "load_gini"),
            "first_time_fix_rate": policy_median(name, "first_time_fix_rate"),
            "abandoned": policy_median(name, "abandoned"),
            "escalated": policy_median(name, "escalated"),
            "seconds": policy_median(name, "seconds"),
        }
        for name in POLICIES
    }
    smart, rr = quality["smart"], quality["round_robin"]
    seconds = _median([r["sim_10k_seconds"] for r in per_run])
    engine = _median([r["policies"]["smart"]["engine_seconds"] for r in per_run])
    heap = _median([r["baseline_heap_seconds"] for r in per_run])
    breach_ratio = smart["sla_breach_rate"] / rr["sla_breach_rate"] if rr["sla_breach_rate"] else None
    travel_ratio = smart["mean_travel_km"] / rr["mean_travel_km"] if rr["mean_travel_km"] else None
    met = {
        "sim_10k_seconds": seconds < TARGETS["sim_10k_seconds"],
        "smart_sla_breach_rate": smart["sla_breach_rate"] <= TARGETS["smart_sla_breach_rate"],
        "breach_ratio_to_round_robin": breach_ratio is not None
        and breach_ratio <= TARGETS["breach_ratio_to_round_robin"],
        "smart_skill_match_rate": smart["skill_match_rate"] >= TARGETS["smart_skill_match_rate"],
        "travel_ratio_to_round_robin": travel_ratio is not None
        and travel_ratio <= TARGETS["travel_ratio_to_round_robin"],
        "smart_accept_mean_minutes": smart["accept_mean_minutes"] <= TARGETS["smart_accept_mean_minutes"],
    }
    return {
        "benchmark": "sim",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(sys.argv),
        "git_commit": git_commit(),
        "sim_10k_seconds": seconds,
        "baseline_engine_seconds": engine,
        "engine_share": round(engine / seconds, 3) if seconds else None,
        "baseline_heap_seconds": heap,
        "ratio_to_heap_baseline": round(seconds / heap, 1) if heap else None,
        "breach_ratio_to_round_robin": round(breach_ratio, 4) if breach_ratio is not None else None,
        "travel_ratio_to_round_robin": round(travel_ratio, 4) if travel_ratio is not None else None,
        "quality": quality,
        "erlang_c": erlang,
        "targets": TARGETS,
        "met": met,
        "runs": per_run,
        "parameters": {
            "scenario": "double11",
            "orders": per_run[0]["policies"]["smart"]["scenario_orders"],
            "seeds": [r["seed"] for r in per_run],
            "policies": POLICIES,
        },
        "machine": machine("not used") | {"load_average_1min_before": round(load_before, 2)},
    }


def table(result: dict) -> str:
    q = result["quality"]
    t = result["targets"]
    met = result["met"]

    def mark(key: str) -> str:
        return "met" if met[key] else "MISSED"

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.2%}"

    lines = [
        f"Simulator benchmark: double11, seeds {result['parameters']['seeds']} (medians), commit "
        f"{result['git_commit'] or 'unknown'}, {result['machine']['cpus']} CPUs, load "
        f"{result['machine']['load_average_1min_before']}",
        f"command: {result['command']}",
        "",
        f"sim_10k_seconds (smart)            {result['sim_10k_seconds']:8.2f} s   target < {t['sim_10k_seconds']:.0f} s  "
        f"{mark('sim_10k_seconds')}",
        f"  baseline: inside plan_round       {result['baseline_engine_seconds']:8.2f} s   "
        f"({result['engine_share']:.0%} of the run)",
        f"  baseline: bare heapq, same events {result['baseline_heap_seconds']:8.2f} s   "
        f"ratio {result['ratio_to_heap_baseline']}",
        "",
        f"{'':<30}" + "".join(f"{n:>22}" for n in POLICIES),
    ]
    rows = (
        ("SLA breach rate", "sla_breach_rate", pct),
        ("time to accept, mean (min)", "accept_mean_minutes", lambda v: f"{v:.2f}"),
        ("time to accept, p90 (min)", "accept_p90_minutes", lambda v: f"{v:.2f}"),
        ("skill-match rate", "skill_match_rate", pct),
        ("mean travel, on-site (km)", "mean_travel_km", lambda v: f"{v:.2f}"),
        ("utilisation", "utilisation", pct),
        ("load Gini", "load_gini", lambda v: f"{v:.3f}"),
        ("first-time fix", "first_time_fix_rate", pct),
        ("abandoned", "abandoned", lambda v: f"{v:.0f}"),
        ("escalated (L2)", "escalated", lambda v: f"{v:.0f}"),
        ("simulated in (s)", "seconds", lambda v: f"{v:.1f}"),
    )
    for title, key, fmt in rows:
        lines.append(
            f"  {title:<28}"
            + "".join(f"{('—' if q[n][key] is None else fmt(q[n][key])):>22}" for n in POLICIES)
        )
    e = result["erlang_c"]
    lines += [
        "",
        f"smart breach rate {pct(q['smart']['sla_breach_rate'])} (target ≤ {t['smart_sla_breach_rate']:.1%}) "
        f"{mark('smart_sla_breach_rate')}; ratio to round robin {result['breach_ratio_to_round_robin']} "
        f"(≤ 0.333) {mark('breach_ratio_to_round_robin')}",
        f"skill match {pct(q['smart']['skill_match_rate'])} (≥ 95%) {mark('smart_skill_match_rate')}; travel ratio "
        f"{result['travel_ratio_to_round_robin']} (≤ 0.6) {mark('travel_ratio_to_round_robin')}; accept mean "
        f"{q['smart']['accept_mean_minutes']:.2f} min (≤ 2.3) {mark('smart_accept_mean_minutes')}",
        f"Erlang C (c={e['servers']}, ρ={e['utilisation']}, {e['arrivals']:,} arrivals): P(wait) {e['p_wait']} vs "
        f"{e['p_wait_formula']} ({e['p_wait_error']:+.1%}), mean wait {e['mean_wait_minutes']} vs "
        f"{e['mean_wait_formula']} min ({e['mean_wait_error']:+.1%}), {e['seconds']} s",
    ]
    return "\n".join(lines)
