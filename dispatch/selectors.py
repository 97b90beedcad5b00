"""Reads for dispatch: the snapshots the engine decides over, policy resolution, and what
agents and supervisors may see of assignments and the pool."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet

from agents.models import Agent, AgentSkill, Region, Skill
from dispatch.engine.rounds import ScopedPolicy, resolve_policy
from dispatch.engine.scoring import default_weights
from dispatch.engine.types import (
    AgentSnap,
    AgentStatus,
    Criterion,
    HardFilter,
    PolicyKind,
    PolicySpec,
    TaskSnap,
)
from dispatch.models import LIVE_STATES, Assignment, DispatchPolicy, PoolEntry
from orders.actors import roles_of
from orders.states import Role

DEFAULT_POLICY = DispatchPolicy(name="default", kind=DispatchPolicy.Kind.SMART)
REVIEW_POLICY = DispatchPolicy(name="default (risk review)", kind=DispatchPolicy.Kind.SMART)


def skill_keywords() -> dict[str, list[str]]:
    return {code: list(words or []) for code, words in Skill.objects.values_list("code", "keywords")}


def region_by_province() -> dict[str, int]:
    table: dict[str, int] = {}
    for region_id, provinces in Region.objects.order_by("code").values_list("id", "provinces"):
        for name in provinces or []:
            table.setdefault(str(name).strip(), region_id)
    return table


@dataclass
class ResolvedPolicy:
    row: DispatchPolicy
    spec: PolicySpec


def scoped_policy(policy: DispatchPolicy, spec: PolicySpec) -> ScopedPolicy:
    """The engine's view of a policy row: its spec, its scope and its escalation limits."""
    return ScopedPolicy(
        name=policy.name,
        spec=spec,
        channel_id=policy.channel_id,
        service_type=policy.service_type,
        region_id=policy.region_id,
        max_rounds=policy.max_rounds,
        l2_wait_seconds=policy.l2_wait_seconds,
    )


def policy_spec(policy: DispatchPolicy, shares: dict[int, float] | None = None) -> PolicySpec:
    names = [Criterion(item["criterion"]) for item in policy.criteria or []]
    defaults = dict(default_weights(names)) if names else {}
    criteria = tuple(
        (Criterion(item["criterion"]), float(item.get("weight") or defaults[Criterion(item["criterion"])]))
        for item in policy.criteria or []
    )
    filters = frozenset(HardFilter(f) for f in policy.filters)
    return PolicySpec(
        kind=PolicyKind(policy.kind),
        criteria=criteria,
        filters=filters,
        shares=shares or {},
        offer_seconds=policy.offer_seconds,
        burst_first=policy.burst_first,
        burst_min_seconds=policy.burst_min_seconds,
        burst_max_seconds=policy.burst_max_seconds,
    )


class PolicyBook:
    """The active policies, loaded once per tick; `for_entry` picks the most specific."""

    def __init__(self) -> None:
        rows = list(DispatchPolicy.objects.filter(is_active=True).prefetch_related("shares"))
        self._rows = [
            ResolvedPolicy(row, policy_spec(row, {s.agent_id: float(s.share) for s in row.shares.all()}))
            for row in rows
        ]
        self.default = ResolvedPolicy(DEFAULT_POLICY, policy_spec(DEFAULT_POLICY))
        # What the engine decides with (also the simulator's live policy set).
        self.scoped_policies = tuple(scoped_policy(r.row, r.spec) for r in self._rows)
        self.default_scoped = scoped_policy(self.default.row, self.default.spec)
        # The engine answers with one of the scoped policies it was given: map it back to its row.
        self._by_scoped = {id(s): r for s, r in zip(self.scoped_policies, self._rows, strict=True)}
        # Review tasks have no address: the desk team is matched on skill alone by default.
        self._review_default = ResolvedPolicy(REVIEW_POLICY, policy_spec(REVIEW_POLICY))
        self._skill_forced: dict[int | None, ResolvedPolicy] = {}

    def for_entry(self, entry: PoolEntry) -> ResolvedPolicy:
        if entry.kind == PoolEntry.Kind.REVIEW:
            return self._for_review(entry)
        chosen = resolve_policy(
            self.scoped_policies,
            self.default_scoped,
            channel_id=entry.channel_id,
            category=entry.category,
            region_id=entry.region_id,
        )
        return self._by_scoped.get(id(chosen), self.default)

    def _for_review(self, entry: PoolEntry) -> ResolvedPolicy:
        """Review tasks follow only policies written for them (service type `risk_review`),
        and whatever the policy says, only agents with the skill may get one."""
        best = self._review_default
        best_score = -1
        for resolved in self._rows:
            row = resolved.row
            if row.service_type != entry.category:
                continue
            if row.channel_id is not None and row.channel_id != entry.channel_id:
                continue
            if row.region_id is not None and row.region_id != entry.region_id:
                continue
            score = (row.channel_id is not None) + (row.region_id is not None)
            if score > best_score or (score == best_score and row.name < best.row.name):
                best, best_score = resolved, score
        if HardFilter.SKILL not in best.spec.filters:
            key = best.row.pk
            if key not in self._skill_forced:
                self._skill_forced[key] = ResolvedPolicy(
                    best.row, replace(best.spec, filters=best.spec.filters | {HardFilter.SKILL})
                )
            best = self._skill_forced[key]
        return best


def agent_snapshots(*, now: datetime) -> list[AgentSnap]:
    """Every agent with what the engine needs, in a fixed number of queries."""
    agents = list(
        Agent.objects.values(
            "id",
            "status",
            "capacity",
            "latitude",
            "longitude",
            "service_radius_km",
            "good_rate_7d",
            "quality_weight",
            "last_offer_at",
        )
    )
    skills: dict[int, dict[str, int]] = defaultdict(dict)
    for agent_id, code, level in AgentSkill.objects.values_list("agent_id", "skill__code", "level"):
        skills[agent_id][code] = level
    regions: dict[int, set[int]] = defaultdict(set)
    for agent_id, region_id in Agent.regions.through.objects.values_list("agent_id", "region_id"):
        regions[agent_id].add(region_id)
    channels: dict[int, set[int]] = defaultdict(set)
    for agent_id, channel_id in Agent.dedicated_channels.through.objects.values_list(
        "agent_id", "channel_id"
    ):
        channels[agent_id].add(channel_id)
    active = dict(
        Assignment.objects.filter(state__in=LIVE_STATES)
        .values("agent_id")
        .annotate(n=Count("id"))
        .values_list("agent_id", "n")
    )
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = dict(
        Assignment.objects.filter(offered_at__gte=day_start)
        .values("agent_id")
        .annotate(n=Count("id"))
        .values_list("agent_id", "n")
    )
    return [
        AgentSnap(
            id=a["id"],
            status=AgentStatus(a["status"]),
            capacity=a["capacity"],
            active=active.get(a["id"], 0),
            skills=skills.get(a["id"], {}),
            regions=frozenset(regions.get(a["id"], ())),
            lat=float(a["latitude"]) if a["latitude"] is not None else None,
            lng=float(a["longitude"]) if a["longitude"] is not None else None,
            radius_km=float(a["service_radius_km"]),
            dedicated_channels=frozenset(channels.get(a["id"], ())),
            good_rate_7d=a["good_rate_7d"],
            quality_weight=a["quality_weight"],
            last_offer_at=a["last_offer_at"].timestamp() if a["last_offer_at"] else 0.0,
            offers_today=today.get(a["id"], 0),
        )
        for a in agents
    ]


def task_snapshots(entries: list[PoolEntry], *, now: datetime) -> list[TaskSnap]:
    """The engine's view of claimed pool entries: who served the customer last, their
    dedicated agents, and who may never get this entry again."""
    entry_ids = [e.pk for e in entries]
    customer_ids = {e.customer_id for e in entries if e.customer_id}
    excluded: dict[int, set[int]] = defaultdict(set)
    for entry_id, agent_id in Assignment.objects.filter(
        entry_id__in=entry_ids, state__in=[Assignment.State.REJECTED, Assignment.State.EXPIRED]
    ).values_list("entry_id", "agent_id"):
        excluded[entry_id].add(agent_id)
    last_agent: dict[int, int] = {}
    if customer_ids:
        served = (
            Assignment.objects.filter(
                entry__customer_id__in=customer_ids,
                state__in=[Assignment.State.ACCEPTED, Assignment.State.COMPLETED],
            )
            .order_by("-offered_at", "-id")
            .values_list("entry__customer_id", "agent_id")
        )
        for customer_id, agent_id in served:
            last_agent.setdefault(customer_id, agent_id)
    dedicated: dict[int, set[int]] = defaultdict(set)
    vip_customers = {e.customer_id for e in entries if e.is_vip and e.customer_id}
    if vip_customers:
        for agent_id, customer_id in Agent.dedicated_customers.through.objects.filter(
            customer_id__in=vip_customers
        ).values_list("agent_id", "customer_id"):
            dedicated[customer_id].add(agent_id)
    return [
        TaskSnap(
            id=e.pk,
            kind=e.kind,
            channel_id=e.channel_id,
            region_id=e.region_id,
            lat=e.latitude,
            lng=e.longitude,
            skills=frozenset(e.skills or ()),
            expedited=e.expedited,
            repeat_repair=e.repeat_repair,
            vip=e.is_vip,
            dedicated_agents=frozenset(dedicated.get(e.customer_id, ())),
            last_agent_id=last_agent.get(e.customer_id) if e.customer_id else None,
            excluded=frozenset(excluded.get(e.pk, ())),
            waiting_seconds=max(0.0, (now - e.ready_at).total_seconds()),
            rounds=e.rounds,
        )
        for e in entries
    ]


def recent_repeat_customers(
    *, pairs: set[tuple[int, str]], exclude_order_ids: list[int], now: datetime
) -> set:
    """(customer, category) pairs with another order in the last 30 days: a repeat repair."""
    from orders.models import Order

    if not pairs:
        return set()
    rows = Order.objects.filter(
        customer_id__in={c for c, _ in pairs},
        category__in={k for _, k in pairs},
        received_at__gte=now - timedelta(days=30),
    ).exclude(pk__in=exclude_order_ids)
    return set(rows.values_list("customer_id", "category")) & pairs


# --- What people may see ---------------------------------------------------------------
# Who dispatches by hand, sees every agent's assignments and the pool of their regions.
MANAGER_ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR})


def assignments_visible_to(user) -> QuerySet[Assignment]:
    """Admins see every assignment, supervisors those of their regions' pool (an assignment
    shows its order's customer and address), agents their own."""
    qs = Assignment.objects.select_related("agent", "order", "inquiry", "order__channel")
    roles = roles_of(user)
    if Role.ADMIN in roles:
        return qs
    if Role.SUPERVISOR in roles:
        regions = list(user.supervised_regions.values_list("id", flat=True))
        if not regions:
            return qs  # a supervisor of no particular region oversees them all
        return qs.filter(Q(entry__region_id__in=regions) | Q(entry__region__isnull=True))
    agent = getattr(user, "agent", None) if user.is_authenticated else None
    if agent is None:
        return qs.none()
    return qs.filter(agent=agent)


def pool_visible_to(user) -> QuerySet[PoolEntry]:
    """Supervisors see the pool of their regions (and entries with no region); admins all."""
    qs = PoolEntry.objects.select_related("order", "inquiry", "channel", "region")
    roles = roles_of(user)
    if Role.ADMIN in roles:
        return qs
    if Role.SUPERVISOR in roles:
        regions = list(user.supervised_regions.values_list("id", flat=True))
        if not regions:
            return qs  # a supervisor of no particular region oversees them all
        return qs.filter(Q(region_id__in=regions) | Q(region__isnull=True))
    return qs.none()
