"""The figures a simulated run is judged by, and the same figures for every policy side by side.

Definitions (each figure's meaning in the report is this and nothing else):
- time to accept: from the order becoming ready to an agent accepting it (or the supervisor
  assigning it by hand), over the orders that were accepted;
- SLA breach: the work on the order finished after its due time, or never (abandoned by the
  customer, or still unserved a day after the last arrival); the rate is over all orders;
- skill match: the accepted agent holds every skill the order calls for, over accepted orders
  that call for one;
- travel: the road distance driven to on-site work; distance: the straight line from the agent
  to the order when it was offered, over accepted orders with coordinates on both sides;
- utilisation: busy time (travel and work) over shift time, all agents together;
- load spread: the Gini coefficient of items finished per agent with a shift;
- first-time fix: on-site jobs fixed at the first visit (a failed one brings a repeat order).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from dispatch.engine.metrics import gini
from dispatch.sim.model import Scenario


def _stats_minutes(seconds: Iterable[float]) -> dict:
    values = np.asarray(list(seconds), dtype=float) / 60.0
    if values.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "mean": round(float(values.mean()), 3),
        "p50": round(float(p50), 3),
        "p90": round(float(p90), 3),
        "p99": round(float(p99), 3),
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 5) if whole else None


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None


def summarise(outcome) -> dict:
    """One run's figures: a flat dict for people and machines, with hourly series for charts."""
    tasks = outcome.tasks
    n = len(tasks)
    accepted = [t for t in tasks if t.accepted_at is not None]
    finished = [t for t in tasks if t.finished_at is not None]
    breached = [t for t in tasks if t.finished_at is None or t.finished_at > t.order.due_seconds + 1e-9]
    needing = [t for t in accepted if t.order.skills]
    with_distance = [t.distance_km for t in accepted if t.distance_km is not None]
    travel = [t.travel_km for t in finished if t.travel_km is not None]
    on_site = [t for t in finished if t.fixed is not None]
    staffed = [a for a in outcome.agents if a.shift_seconds > 0]
    shift_total = sum(a.shift_seconds for a in staffed)
    busy_total = sum(a.busy_seconds for a in staffed)
    c = outcome.counters
    result = {
        "policy": outcome.policy.name,
        "orders": n,
        "scenario_orders": len(outcome.scenario.orders),
        "repeat_orders": c.repeat_orders,
        "accepted": len(accepted),
        "finished": len(finished),
        "abandoned": sum(t.state == "abandoned" for t in tasks),
        "unserved": sum(t.state in ("waiting", "offered", "escalated") for t in tasks),
        "escalated": c.escalated,
        "assigned_by_hand": c.manual,
        "accept_minutes": _stats_minutes(t.accepted_at - t.order.ready_seconds for t in accepted),
        "sla_breaches": len(breached),
        "sla_breach_rate": _rate(len(breached), n),
        "skill_match_rate": _rate(sum(bool(t.skill_match) for t in needing), len(needing)),
        "orders_needing_a_skill": len(needing),
        "mean_travel_km": _mean(travel),
        "on_site_jobs": len(travel),
        "mean_distance_km": _mean(with_distance),
        "utilisation": round(busy_total / shift_total, 4) if shift_total else None,
        "load_gini": round(gini(a.items for a in staffed), 4),
        "first_time_fix_rate": _rate(sum(bool(t.fixed) for t in on_site), len(on_site)),
        "offers": c.offers,
        "rejects": c.rejects,
        "expiries": c.expiries,
        "offers_released": c.released,
        "rounds": c.rounds,
        "full_rounds": c.full_rounds,
        "wall_seconds": round(outcome.wall_seconds, 3),
        "series": _series(outcome),
        "per_agent": [
            {
                "id": a.spec.id,
                "name": a.spec.name,
                "items": a.items,
                "offers": a.offers,
                "busy_hours": round(a.busy_seconds / 3600, 2),
                "shift_hours": round(a.shift_seconds / 3600, 2),
                "utilisation": round(a.busy_seconds / a.shift_seconds, 4) if a.shift_seconds else None,
            }
            for a in outcome.agents
        ],
    }
    return result


def _series(outcome) -> dict:
    """Hourly, by the hour an order became ready: arrivals, p90 time to accept, breaches; and the
    orders waiting for someone to accept them (not yet accepted nor abandoned) at each hour mark."""
    hours = max(1, math.ceil(outcome.scenario.horizon_seconds / 3600))
    arrivals = np.zeros(hours, dtype=int)
    breaches = np.zeros(hours, dtype=int)
    waits: list[list[float]] = [[] for _ in range(hours)]
    ready = []
    left = []
    for t in outcome.tasks:
        h = min(hours - 1, int(t.order.ready_seconds // 3600))
        arrivals[h] += 1
        if t.finished_at is None or t.finished_at > t.order.due_seconds + 1e-9:
            breaches[h] += 1
        if t.accepted_at is not None:
            waits[h].append((t.accepted_at - t.order.ready_seconds) / 60)
        ready.append(t.order.ready_seconds)
        gone = t.accepted_at if t.accepted_at is not None else t.abandoned_at
        left.append(gone if gone is not None else math.inf)
    marks = np.arange(hours) * 3600.0
    ready_a, left_a = np.asarray(ready), np.asarray(left)
    waiting = [int(((ready_a <= m) & (left_a > m)).sum()) for m in marks] if ready else [0] * hours
    return {
        "hours": list(range(hours)),
        "arrivals": arrivals.tolist(),
        "accept_p90_minutes": [round(float(np.percentile(w, 90)), 2) if w else None for w in waits],
        "waiting": waiting,
        "breaches": breaches.tolist(),
    }


def scenario_summary(scenario: Scenario) -> dict:
    return {
        "name": scenario.name,
        "description": scenario.description,
        "orders": len(scenario.orders),
        "agents": len(scenario.agents),
        "start": scenario.start.isoformat(),
        "horizon_hours": round(scenario.horizon_seconds / 3600, 2),
        "parameters": dict(scenario.parameters),
    }
