"""A simulation scenario read from the database: the orders that really became ready in a range
of days, the real roster with how each agent really behaved, and the policy sets to compare
(what is live, and what is live with one draft switched on). The Django side of `dispatch.sim`.

How history becomes a scenario (every estimate and its fallback):
- Orders: each `PoolEntry` of kind order whose `ready_at` falls in [start, end) local days
  (settings.TIME_ZONE) is one `SimOrder`, ready at its offset from the range's start, with the
  entry's channel, region, category, skills, coordinates, expedited, repeat-repair, VIP flag
  and customer. It is due when `orders.sla.due_at_for` says an order entering pending review
  at `ready_at` is, under today's SLA policies.
- Work: a category's `work_minutes` is the median accepted→closed time (`responded_at` →
  `closed_at`) of the completed assignments of its orders answered in the range; a category
  with none takes the median of the agents' `avg_handling_minutes`; with none of those either,
  `DEFAULT_WORK_MINUTES`.
- On-site: an order is worked at the customer's address when it has coordinates and its
  category is in `settings.SIM_ON_SITE_CATEGORIES` (default `DEFAULT_ON_SITE_CATEGORIES`,
  the demo's install and repair categories).
- Agents: every agent, with skills and levels, regions, coordinates, radius, capacity,
  dedicated channels and customers, 7-day good rate and quality weight as they are now.
- Behaviour, from the agent's automatic offers (not assignments by hand) made in the range:
  acceptance = accepted / (answered or expired) when there are at least
  `MIN_OFFERS_FOR_ACCEPTANCE` such offers, else the model's default; acceptance without the
  skills = the default, but never above the agent's acceptance; the response median is the
  median offered→answered time of accepted or rejected offers when there are at least
  `MIN_ANSWERS_FOR_RESPONSE`, else the default. Everything else is the model's default.
- Shifts, per local day: from `SHIFT_LEAD` before the agent's first offer that day (or first
  activity, if only answers or closes fall on it) to their last answer or close that day,
  at least `MIN_SHIFT` long, held inside the range; days without activity are days off. An
  agent with no activity in the whole range works `DEFAULT_SHIFT` local time every day.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils.translation import gettext as _

from agents.models import Agent, AgentSkill
from dispatch.models import Assignment, DispatchPolicy, PoolEntry
from dispatch.selectors import PolicyBook, policy_spec, scoped_policy
from dispatch.sim.model import Behaviour, PolicySet, Scenario, SimAgent, SimOrder
from orders.sla import due_at_for
from orders.sla_policies import sla_book
from orders.states import Stage

DEFAULT_WORK_MINUTES = 15.0
DEFAULT_ON_SITE_CATEGORIES = ("appliance_install", "repair", "install", "home_service")
MIN_OFFERS_FOR_ACCEPTANCE = 10
MIN_ANSWERS_FOR_RESPONSE = 3
SHIFT_LEAD = timedelta(minutes=30)
MIN_SHIFT = timedelta(hours=4)
DEFAULT_SHIFT = (time(9, 0), time(18, 0))
LIVE_SET_NAME = "live"
ACTIVITY_LOOKBACK = timedelta(days=1)

_DEFAULT_BEHAVIOUR = Behaviour()


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def on_site_categories() -> frozenset[str]:
    return frozenset(getattr(settings, "SIM_ON_SITE_CATEGORIES", DEFAULT_ON_SITE_CATEGORIES))


def scenario_from_history(*, start: date, end: date) -> Scenario:
    """The orders and agents of the local days [start, end) as a scenario (see the module's
    docstring for every estimate). Raises ValueError when the range holds no orders or the
    roster is empty."""
    if end <= start:
        raise ValueError(_("The range must end after it starts (%(start)s – %(end)s).") % _dates(start, end))
    tz = _zone()
    t0 = datetime.combine(start, time.min, tzinfo=tz)
    t1 = datetime.combine(end, time.min, tzinfo=tz)
    entries = list(
        PoolEntry.objects.filter(kind=PoolEntry.Kind.ORDER, ready_at__gte=t0, ready_at__lt=t1)
        .select_related("order")
        .order_by("ready_at", "id")
    )
    if not entries:
        raise ValueError(
            _("No orders became ready between %(start)s and %(end)s: there is nothing to replay.")
            % _dates(start, end)
        )
    agents = list(Agent.objects.order_by("id"))
    if not agents:
        raise ValueError(_("There are no agents: a simulation needs a roster to dispatch to."))

    # By the offer time, on its index; an offer made up to a day earlier may still be
    # answered or closed in the range (each use below holds its own field to the range).
    assignments = list(
        Assignment.objects.filter(offered_at__gte=t0 - ACTIVITY_LOOKBACK, offered_at__lt=t1).values(
            "agent_id",
            "state",
            "manual",
            "offered_at",
            "responded_at",
            "closed_at",
            "entry__kind",
            "entry__category",
        )
    )
    work = _work_minutes(assignments, agents, t0=t0, t1=t1)
    fallback_work = _fallback_work_minutes(agents)
    on_site = on_site_categories()
    book = sla_book()
    orders = []
    for e in entries:
        expedited = bool(e.expedited)
        due = due_at_for(
            stage=Stage.PENDING_REVIEW,
            entered_at=e.ready_at,
            expedited=expedited,
            category=e.category,
            policies=book,
        )
        has_coordinates = e.latitude is not None and e.longitude is not None
        orders.append(
            SimOrder(
                id=e.order_id,
                ready_seconds=(e.ready_at - t0).total_seconds(),
                due_seconds=(due - t0).total_seconds(),
                work_minutes=work.get(e.category, fallback_work),
                channel_id=e.channel_id,
                region_id=e.region_id,
                category=e.category,
                skills=frozenset(e.skills or ()),
                lat=e.latitude,
                lng=e.longitude,
                on_site=has_coordinates and e.category in on_site,
                expedited=expedited,
                repeat_repair=bool(e.repeat_repair),
                vip=bool(e.is_vip),
                customer_id=e.customer_id,
                label=e.order.tag if e.order_id else "",
            )
        )

    by_agent: dict[int, list[dict]] = defaultdict(list)
    for a in assignments:
        by_agent[a["agent_id"]].append(a)
    sim_agents = _agents(agents, by_agent, t0=t0, t1=t1, start=start, end=end, tz=tz)
    estimated = sum(1 for a in sim_agents if a.behaviour != _DEFAULT_BEHAVIOUR)
    return Scenario(
        name=f"history {start.isoformat()}..{(end - timedelta(days=1)).isoformat()}",
        start=t0,
        horizon_seconds=(t1 - t0).total_seconds(),
        orders=orders,
        agents=sim_agents,
        description=_(
            "The %(orders)d orders that became ready from %(start)s to %(end)s and the %(agents)d "
            "agents of the roster, replayed with their measured behaviour."
        )
        % {"orders": len(orders), "agents": len(sim_agents), **_dates(start, end)},
        parameters={
            "source": "history",
            "start": start.isoformat(),
            "end": end.isoformat(),
            "time_zone": settings.TIME_ZONE,
            "work_minutes": {k: round(v, 2) for k, v in sorted(work.items())},
            "work_minutes_fallback": round(fallback_work, 2),
            "on_site_categories": sorted(on_site),
            "agents_with_measured_behaviour": estimated,
        },
    )


def _dates(start: date, end: date) -> dict[str, str]:
    """The range as people read it: both days included."""
    return {"start": start.isoformat(), "end": (end - timedelta(days=1)).isoformat()}


def _work_minutes(assignments: list[dict], agents: list[Agent], *, t0: datetime, t1: datetime) -> dict:
    """Per category: the median accepted→closed minutes of completed order assignments
    answered in the range."""
    samples: dict[str, list[float]] = defaultdict(list)
    for a in assignments:
        if (
            a["state"] == Assignment.State.COMPLETED
            and a["entry__kind"] == PoolEntry.Kind.ORDER
            and a["responded_at"] is not None
            and a["closed_at"] is not None
            and t0 <= a["responded_at"] < t1
            and a["closed_at"] >= a["responded_at"]
        ):
            samples[a["entry__category"] or ""].append(
                (a["closed_at"] - a["responded_at"]).total_seconds() / 60
            )
    # A job of zero minutes is no job: at least a minute, so the simulator's agents do work.
    return {category: max(1.0, statistics.median(values)) for category, values in samples.items()}


def _fallback_work_minutes(agents: list[Agent]) -> float:
    handling = [a.avg_handling_minutes for a in agents if a.avg_handling_minutes]
    return max(1.0, statistics.median(handling)) if handling else DEFAULT_WORK_MINUTES


def _agents(
    agents: list[Agent],
    by_agent: dict[int, list[dict]],
    *,
    t0: datetime,
    t1: datetime,
    start: date,
    end: date,
    tz: ZoneInfo,
) -> list[SimAgent]:
    ids = [a.pk for a in agents]
    skills: dict[int, dict[str, int]] = defaultdict(dict)
    for agent_id, code, level in AgentSkill.objects.filter(agent_id__in=ids).values_list(
        "agent_id", "skill__code", "level"
    ):
        skills[agent_id][code] = level
    regions = _pairs(Agent.regions.through.objects.values_list("agent_id", "region_id"))
    channels = _pairs(Agent.dedicated_channels.through.objects.values_list("agent_id", "channel_id"))
    customers = _pairs(Agent.dedicated_customers.through.objects.values_list("agent_id", "customer_id"))
    out = []
    for agent in agents:
        history = by_agent.get(agent.pk, [])
        out.append(
            SimAgent(
                id=agent.pk,
                name=agent.display_name,
                capacity=max(1, agent.capacity),
                skills=skills.get(agent.pk, {}),
                regions=frozenset(regions.get(agent.pk, ())),
                lat=float(agent.latitude) if agent.latitude is not None else None,
                lng=float(agent.longitude) if agent.longitude is not None else None,
                radius_km=float(agent.service_radius_km),
                dedicated_channels=frozenset(channels.get(agent.pk, ())),
                dedicated_customers=frozenset(customers.get(agent.pk, ())),
                good_rate_7d=agent.good_rate_7d,
                quality_weight=agent.quality_weight,
                shifts=shifts_from_activity(history, t0=t0, t1=t1, start=start, end=end, tz=tz),
                behaviour=behaviour_from_offers(history, t0=t0, t1=t1),
            )
        )
    return out


def _pairs(rows: Iterable[tuple[int, int]]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = defaultdict(set)
    for left, right in rows:
        out[left].add(right)
    return out


def behaviour_from_offers(history: list[dict], *, t0: datetime, t1: datetime) -> Behaviour:
    """An agent's acceptance and response time from their automatic offers made in the range."""
    offers = [
        a for a in history if not a["manual"] and t0 <= a["offered_at"] < t1 and a["responded_at"] is not None
    ]
    refused = (Assignment.State.REJECTED, Assignment.State.EXPIRED)
    acceptance = _DEFAULT_BEHAVIOUR.acceptance
    if len(offers) >= MIN_OFFERS_FOR_ACCEPTANCE:
        acceptance = sum(1 for a in offers if a["state"] not in refused) / len(offers)
    answers = [
        (a["responded_at"] - a["offered_at"]).total_seconds()
        for a in offers
        if a["state"] != Assignment.State.EXPIRED and a["responded_at"] >= a["offered_at"]
    ]
    response = _DEFAULT_BEHAVIOUR.response_median_seconds
    if len(answers) >= MIN_ANSWERS_FOR_RESPONSE:
        response = statistics.median(answers)
    if (acceptance, response) == (_DEFAULT_BEHAVIOUR.acceptance, _DEFAULT_BEHAVIOUR.response_median_seconds):
        return _DEFAULT_BEHAVIOUR
    return Behaviour(
        acceptance=round(acceptance, 4),
        acceptance_unskilled=min(_DEFAULT_BEHAVIOUR.acceptance_unskilled, round(acceptance, 4)),
        response_median_seconds=round(response, 1),
    )


def shifts_from_activity(
    history: list[dict], *, t0: datetime, t1: datetime, start: date, end: date, tz: ZoneInfo
) -> tuple[tuple[float, float], ...]:
    """Per local day with activity: [first offer − lead, last answer or close], at least the
    minimum shift, inside the range; none at all: the default day shift every day."""
    first_offer: dict[date, datetime] = {}
    first_any: dict[date, datetime] = {}
    last_any: dict[date, datetime] = {}
    for a in history:
        for field in ("offered_at", "responded_at", "closed_at"):
            moment = a[field]
            if moment is None or not t0 <= moment < t1:
                continue
            day = moment.astimezone(tz).date()
            if field == "offered_at" and (day not in first_offer or moment < first_offer[day]):
                first_offer[day] = moment
            if day not in first_any or moment < first_any[day]:
                first_any[day] = moment
            if day not in last_any or moment > last_any[day]:
                last_any[day] = moment
    intervals: list[tuple[float, float]] = []
    if not last_any:
        day = start
        while day < end:
            begin = datetime.combine(day, DEFAULT_SHIFT[0], tzinfo=tz)
            finish = datetime.combine(day, DEFAULT_SHIFT[1], tzinfo=tz)
            intervals.append(((begin - t0).total_seconds(), (finish - t0).total_seconds()))
            day += timedelta(days=1)
        return tuple(intervals)
    horizon = (t1 - t0).total_seconds()
    for day in sorted(last_any):
        begin = first_offer.get(day, first_any[day]) - SHIFT_LEAD
        finish = max(last_any[day], begin + MIN_SHIFT)
        low = max(0.0, (begin - t0).total_seconds())
        high = min(horizon, (finish - t0).total_seconds())
        if high - low < MIN_SHIFT.total_seconds():  # held at the range's edge: keep four hours
            if low == 0.0:
                high = min(horizon, MIN_SHIFT.total_seconds())
            else:
                low = max(0.0, high - MIN_SHIFT.total_seconds())
        if intervals and low <= intervals[-1][1]:  # a late close running into the next day
            intervals[-1] = (intervals[-1][0], max(intervals[-1][1], high))
        else:
            intervals.append((low, high))
    return tuple(intervals)


# --- Policy sets ---------------------------------------------------------------------------
def _scope(policy) -> tuple:
    """What a policy is for (a row or the engine's view of one): channel, service type, region."""
    return (policy.channel_id, policy.service_type or "", policy.region_id)


def live_policy_set() -> PolicySet:
    """The active policies exactly as `dispatch.selectors.PolicyBook` gives them to the engine,
    with the built-in default for the orders none of them covers."""
    book = PolicyBook()
    return PolicySet(name=LIVE_SET_NAME, policies=book.scoped_policies, default=book.default_scoped)


def policy_set_with_draft(policy: DispatchPolicy) -> PolicySet:
    """The live set with `policy` switched on: it replaces every active policy of exactly its
    scope (channel, service type, region), or is added when none has it."""
    book = PolicyBook()
    kept = tuple(p for p in book.scoped_policies if p.name != policy.name and _scope(p) != _scope(policy))
    draft = DispatchPolicy.objects.prefetch_related("shares").get(pk=policy.pk)
    shares = {s.agent_id: float(s.share) for s in draft.shares.all()}
    return PolicySet(
        name=f"draft: {policy.name}",
        policies=(*kept, scoped_policy(draft, policy_spec(draft, shares))),
        default=book.default_scoped,
    )
