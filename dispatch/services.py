"""Every write to the waiting pool and to assignments: entering the pool, the matching tick,
offers and their answers, expiry, manual moves, escalation. Each writes the order's audit
events and schedules the pushes after commit."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import Agent, PerformanceRecord, Skill
from dashboards.alerts import alert_raise, alerts_raise
from dashboards.models import Alert
from dispatch import selectors
from dispatch.engine.intent import detect_skills, skill_text
from dispatch.engine.rounds import (
    REVIEW_SKILL,
    ROUND_PAGES,
    TICK_LIMIT,
    RoundGroup,
    has_free_slot,
    needs_supervisor,
    offer_windows,
    plan_round,
    rounds_exhausted,
)
from dispatch.engine.types import AgentSnap, AgentStatus, Offer, Waiting, WaitReason
from dispatch.models import LIVE_STATES, WAIT_REASON_LABELS, Assignment, Inquiry, PoolEntry
from orders.actors import Actor, system_actor, user_actor
from orders.models import Channel, Customer, Order, OrderEvent
from orders.states import TERMINAL_STAGES, Stage, TransitionError

logger = logging.getLogger(__name__)

DISPATCH = system_actor("dispatch")
_ENTRY_FIELDS = [f.name for f in PoolEntry._meta.concrete_fields]
L3_EVERY = 3  # consecutive exceptions that raise an L3


class DispatchError(TransitionError):
    code = "dispatch_refused"


class AssignmentNotFound(Exception):
    pass


class OfferNotOpen(DispatchError):
    code = "offer_not_open"


class CapacityExceeded(DispatchError):
    code = "capacity_exceeded"


class NotAnAgent(Exception):
    """The user has no agent profile (403)."""

    code = "not_an_agent"


# --- Entering the pool -----------------------------------------------------------------
def pool_add_orders(*, orders: list[Order], now: datetime) -> list[PoolEntry]:
    """Put orders that are ready for a person into the pool (inside the caller's
    transaction, so an accepted order is never outside both the pool and an owner)."""
    orders = [o for o in orders if o.stage == Stage.PENDING_REVIEW]
    if not orders:
        return []
    keywords = selectors.skill_keywords()
    regions = selectors.region_by_province()
    repeats = selectors.recent_repeat_customers(
        pairs={(o.customer_id, o.category) for o in orders if o.category},
        exclude_order_ids=[o.pk for o in orders],
        now=now,
    )
    entries = []
    for o in orders:
        text = skill_text(o.category, o.note, *(str(i.get("name", "")) for i in o.items or []))
        expedited = o.urgency == Order.Urgency.EXPEDITED
        repeat = (o.customer_id, o.category) in repeats
        entries.append(
            PoolEntry(
                kind=PoolEntry.Kind.ORDER,
                # By id: `order=o` would cache each on the other, a reference cycle that keeps
                # every chunk of a large import alive until the cyclic collector runs.
                order_id=o.pk,
                channel_id=o.channel_id,
                customer_id=o.customer_id,
                region_id=regions.get(o.province),
                category=o.category,
                skills=sorted(detect_skills(text, keywords)),
                latitude=float(o.latitude) if o.latitude is not None else None,
                longitude=float(o.longitude) if o.longitude is not None else None,
                expedited=expedited,
                repeat_repair=repeat,
                is_vip=o.is_vip,
                urgent=expedited or repeat,
                ready_at=now,
                waiting_since=now,
            )
        )
    PoolEntry.objects.bulk_create(entries)
    request_dispatch()
    return entries


def request_dispatch() -> None:
    """Ask for a matching round after this transaction commits: once per transaction however
    many orders it touched. Never raises: if the broker is down the beat sweep (every few
    seconds) does the same work."""

    def send() -> None:
        from dispatch.tasks import dispatch_pool_task

        try:
            dispatch_pool_task.delay()
        except Exception:
            logger.warning("could not enqueue a dispatch round; the sweep will run it", exc_info=True)

    send.paidan_dispatch = True
    connection = transaction.get_connection()
    # Django keeps pending callbacks as (savepoint ids, callable, robust) tuples.
    if connection.in_atomic_block and any(
        getattr(item[1], "paidan_dispatch", False) for item in connection.run_on_commit
    ):
        return
    transaction.on_commit(send)


# --- The tick --------------------------------------------------------------------------
@dataclass
class TickReport:
    expired: int = 0
    claimed: int = 0
    busy: bool = False  # waiting entries existed but other rounds held them all
    offered: int = 0
    waiting: int = 0
    escalated: int = 0
    offers: list[Offer] = field(default_factory=list)


def dispatch_tick(*, now: datetime | None = None, limit: int = TICK_LIMIT) -> TickReport:
    """Expire overdue offers, then match the waiting pool. Safe to run in several workers
    at once: entries are claimed with SKIP LOCKED and agents' capacity re-checked under lock."""
    now = now or timezone.now()
    report = TickReport(expired=assignments_expire(now=now))
    _match_round(now=now, limit=limit, report=report)
    return report


@transaction.atomic
def _match_round(*, now: datetime, limit: int, report: TickReport) -> None:
    """Claim a page of waiting entries (most urgent, then oldest) and match it; while pages come
    back whole and some agent still has a free slot, go on to the next page (ROUND_PAGES)."""
    policies: selectors.PolicyBook | None = None
    after: PoolEntry | None = None
    for _page in range(ROUND_PAGES):
        entries = _claim_page(limit=limit, after=after)
        report.claimed += len(entries)
        if not entries:
            if after is None:
                report.busy = PoolEntry.objects.filter(state=PoolEntry.State.WAITING).exists()
            return
        # Read once a round has work: an empty pool (most sweeps) costs no policy queries.
        policies = policies or selectors.PolicyBook()
        # Read again for every page: the offers of the one before count against capacity.
        agents = selectors.agent_snapshots(now=now)
        offers = _match_page(entries, agents=agents, policies=policies, now=now, report=report)
        if len(entries) < limit or not has_free_slot(agents, offers):
            return
        after = entries[-1]


def _claim_page(*, limit: int, after: PoolEntry | None) -> list[PoolEntry]:
    queryset = PoolEntry.objects.filter(state=PoolEntry.State.WAITING)
    if after is not None:
        # Keyset on the claim order (-urgent, ready_at, id): strictly after the last entry.
        same_urgency = Q(urgent=after.urgent) & (
            Q(ready_at__gt=after.ready_at) | Q(ready_at=after.ready_at, id__gt=after.pk)
        )
        later = (same_urgency | Q(urgent=False)) if after.urgent else same_urgency
        queryset = queryset.filter(later)
    return list(
        queryset.select_related("order", "review__order")
        .only(*_ENTRY_FIELDS, "order__tag", "review__order_id", "review__order__tag")
        .order_by("-urgent", "ready_at", "id")
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )


def _match_page(
    entries: list[PoolEntry],
    *,
    agents: list[AgentSnap],
    policies: selectors.PolicyBook,
    now: datetime,
    report: TickReport,
) -> list[Offer]:
    """Match one page and write its outcome: offers, wait reasons, L2 escalations. Returns the
    offers made."""
    tasks = {t.id: t for t in selectors.task_snapshots(entries, now=now)}
    by_id = {e.pk: e for e in entries}

    resolved = {e.pk: policies.for_entry(e) for e in entries}
    groups: dict[tuple[int, bool], RoundGroup] = {}
    for e in entries:
        spec, review = resolved[e.pk].spec, e.kind == PoolEntry.Kind.REVIEW
        # One group per resolved policy (variants share a row).
        groups.setdefault((id(spec), review), RoundGroup(spec, review=review)).tasks.append(tasks[e.pk])
    planned = plan_round(list(groups.values()), agents, now=now.timestamp())
    offers: list[Offer] = planned.offers
    waiting: list[Waiting] = planned.waiting
    offers, refused = _within_capacity(offers, now=now)
    waiting.extend(refused)
    priority = {e.pk: i for i, e in enumerate(entries)}  # claim order: urgent, then oldest
    offers.sort(key=lambda o: priority[o.task_id])
    _create_offers(offers, by_id=by_id, resolved=resolved, now=now)
    report.offered += len(offers)
    report.offers += offers

    escalations = []
    for item in waiting:
        entry = by_id[item.task_id]
        policy = resolved[entry.pk].row
        entry.wait_reason = item.reason
        entry.wait_detail = item.detail[:200]
        entry.last_tried_at = now
        waited = (now - entry.waiting_since).total_seconds()
        if needs_supervisor(item, waited_seconds=waited, l2_wait_seconds=policy.l2_wait_seconds):
            escalations.append((entry, _wait_message(item)))
        else:
            report.waiting += 1
    _escalate_all(escalations, now=now)
    report.escalated += len(escalations)
    _save_waiting([by_id[w.task_id] for w in waiting], now=now)
    return offers


def _save_waiting(entries: list[PoolEntry], *, now: datetime) -> None:
    """One UPDATE per distinct outcome rather than a CASE per row and field (bulk_update
    took most of a 500-entry round): a round has a handful of reasons, not hundreds."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for e in entries:
        groups[(e.state, e.wait_reason, e.wait_detail, e.escalation_level, e.escalated_at)].append(e.pk)
    for (state, reason, detail, level, escalated_at), ids in groups.items():
        PoolEntry.objects.filter(pk__in=ids).update(
            state=state,
            wait_reason=reason,
            wait_detail=detail,
            escalation_level=level,
            escalated_at=escalated_at,
            last_tried_at=now,
            updated_at=now,
        )


def _within_capacity(offers: list[Offer], *, now: datetime) -> tuple[list[Offer], list[Waiting]]:
    """Lock the chosen agents (in id order, so concurrent ticks cannot deadlock), re-count
    their live items and keep only the offers that still fit and whose agent is online."""
    if not offers:
        return [], []
    agent_ids = sorted({o.agent_id for o in offers})
    locked = {
        a.pk: a
        for a in Agent.objects.filter(pk__in=agent_ids)
        .order_by("pk")
        .select_for_update()
        .only("pk", "capacity", "status")
    }
    live = dict(
        Assignment.objects.filter(agent_id__in=agent_ids, state__in=LIVE_STATES)
        .values("agent_id")
        .annotate(n=Count("id"))
        .values_list("agent_id", "n")
    )
    kept: list[Offer] = []
    refused: list[Waiting] = []
    for offer in offers:
        agent = locked.get(offer.agent_id)
        if agent is None or agent.status != AgentStatus.ONLINE:
            refused.append(Waiting(offer.task_id, WaitReason.OUTRANKED, "the chosen agent went away"))
            continue
        if live.get(agent.pk, 0) >= agent.capacity:
            refused.append(Waiting(offer.task_id, WaitReason.ALL_AT_CAPACITY, "the chosen agent filled up"))
            continue
        live[agent.pk] = live.get(agent.pk, 0) + 1
        kept.append(offer)
    return kept, refused


def _create_offers(offers: list[Offer], *, by_id: dict, resolved: dict, now: datetime) -> None:
    if not offers:
        return
    rows = []
    windows = offer_windows(offers, {o.task_id: resolved[o.task_id].spec for o in offers})
    for offer, window in zip(offers, windows, strict=True):
        entry = by_id[offer.task_id]
        spec = resolved[entry.pk].spec
        rows.append(
            Assignment(
                entry=entry,
                order_id=entry.order_id,
                inquiry_id=entry.inquiry_id,
                review_id=entry.review_id,
                agent_id=offer.agent_id,
                state=Assignment.State.OFFERED,
                round=entry.rounds + 1,
                policy_kind=spec.kind,
                score=round(offer.score, 4),
                breakdown={k: round(v, 4) for k, v in offer.breakdown.items()},
                distance_km=round(offer.distance_km, 2) if offer.distance_km is not None else None,
                skill_match=offer.skill_match,
                offered_at=now,
                expires_at=now + timedelta(seconds=window),
            )
        )
        entry.state = PoolEntry.State.OFFERED
        entry.wait_reason = ""
        entry.wait_detail = ""
        entry.last_tried_at = now
    Assignment.objects.bulk_create(rows)
    PoolEntry.objects.filter(pk__in=[o.task_id for o in offers]).update(
        state=PoolEntry.State.OFFERED, wait_reason="", wait_detail="", last_tried_at=now
    )
    Agent.objects.filter(pk__in={o.agent_id for o in offers}).update(last_offer_at=now)
    names = dict(Agent.objects.filter(pk__in={o.agent_id for o in offers}).values_list("pk", "display_name"))
    OrderEvent.objects.bulk_create(
        [
            _assignment_event(
                a,
                now=now,
                reason=_("Offered to %(agent)s (score %(score).2f), answer by %(until)s")
                % {
                    "agent": names.get(a.agent_id, a.agent_id),
                    "score": a.score or 0,
                    "until": timezone.localtime(a.expires_at).strftime("%H:%M:%S"),
                },
            )
            for a in rows
            if a.order_id
        ]
    )
    _push(agent_ids={a.agent_id for a in rows}, order_ids=[a.order_id for a in rows if a.order_id])


def _wait_message(item: Waiting) -> str:
    text = str(WAIT_REASON_LABELS.get(item.reason, item.reason))
    return f"{text}: {item.detail}" if item.detail else text


# --- Answers to offers ------------------------------------------------------------------
def _lock_assignment(assignment_id: int, *, agent: Agent | None = None) -> Assignment:
    qs = Assignment.objects.select_for_update().filter(pk=assignment_id)
    if agent is not None:
        qs = qs.filter(agent=agent)
    a = qs.first()
    if a is None:
        raise AssignmentNotFound(f"Assignment {assignment_id} does not exist or is not yours.")
    return a


def assignment_accept(*, assignment_id: int, agent: Agent, now: datetime | None = None) -> Assignment:
    """The agent takes the offer: they become the order's owner. An offer past its countdown
    is expired (and stays expired) instead."""
    now = now or timezone.now()
    with transaction.atomic():
        a = _lock_assignment(assignment_id, agent=agent)
        if a.state != Assignment.State.OFFERED:
            raise OfferNotOpen(f"This offer is {a.state}; only an open offer can be accepted.")
        expired = bool(a.expires_at and a.expires_at <= now)
        if expired:
            _expire(a, now=now)
        else:
            a.state = Assignment.State.ACCEPTED
            a.responded_at = now
            a.save(update_fields=["state", "responded_at"])
            PoolEntry.objects.filter(pk=a.entry_id).update(state=PoolEntry.State.ASSIGNED, wait_reason="")
            Agent.objects.filter(pk=agent.pk).update(consecutive_exceptions=0)
            _take_ownership(
                a,
                agent=agent,
                now=now,
                reason=_("Accepted by %(agent)s") % {"agent": agent},
                actor=user_actor(agent.user),
            )
    if expired:
        raise OfferNotOpen("This offer expired before it was accepted; it went back to the pool.")
    return a


def _take_ownership(a: Assignment, *, agent: Agent, now: datetime, reason: str, actor: Actor) -> None:
    if a.order_id:
        Order.objects.filter(pk=a.order_id).update(owner_id=agent.user_id, updated_at=now)
        _assignment_event(a, now=now, reason=reason, owner=agent.user_id, actor=actor).save()
    if a.inquiry_id:
        Inquiry.objects.filter(pk=a.inquiry_id).update(state=Inquiry.State.ASSIGNED, agent_id=agent.pk)
    if a.review_id:
        from riskcontrol.models import Review

        Review.objects.filter(pk=a.review_id).update(agent_id=agent.pk)
    _push(agent_ids={agent.pk}, order_ids=[a.order_id] if a.order_id else [])


@transaction.atomic
def assignment_reject(
    *, assignment_id: int, agent: Agent, reason: str = "", now: datetime | None = None
) -> Assignment:
    """The agent declines: the item goes back to the pool, never to them again."""
    now = now or timezone.now()
    a = _lock_assignment(assignment_id, agent=agent)
    if a.state != Assignment.State.OFFERED:
        raise OfferNotOpen(f"This offer is {a.state}; only an open offer can be rejected.")
    a.state = Assignment.State.REJECTED
    a.responded_at = now
    a.reason = reason[:300]
    a.save(update_fields=["state", "responded_at", "reason"])
    text = _("Rejected by %(agent)s") % {"agent": agent}
    if reason:
        text = f"{text}: {reason}"
    _back_to_pool(a, now=now, why=text, failed_round=True, actor=user_actor(agent.user))
    _agent_exception(a.agent_id, now=now, cause=a, what=_("rejected an offer"))
    return a


def assignments_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Offers past their countdown go back to the pool; each counts against the agent."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Assignment.objects.filter(state=Assignment.State.OFFERED, expires_at__lte=now)
            .select_related("agent")
            .order_by("expires_at")
            .select_for_update(skip_locked=True, of=("self",))[:limit]
        )
        book = selectors.PolicyBook() if due else None  # once for the batch, not per offer
        for a in due:
            _expire(a, now=now, book=book)
    return len(due)


def _expire(a: Assignment, *, now: datetime, book: selectors.PolicyBook | None = None) -> None:
    a.state = Assignment.State.EXPIRED
    a.responded_at = now
    a.save(update_fields=["state", "responded_at"])
    why = _("The offer to %(agent)s expired") % {"agent": a.agent}
    _back_to_pool(a, now=now, why=why, failed_round=True, book=book)
    _agent_exception(a.agent_id, now=now, cause=a, what=_("let an offer expire"))


def _back_to_pool(
    a: Assignment,
    *,
    now: datetime,
    why: str,
    failed_round: bool,
    actor: Actor = DISPATCH,
    book: selectors.PolicyBook | None = None,
) -> None:
    entry = PoolEntry.objects.select_for_update().get(pk=a.entry_id)
    if entry.state == PoolEntry.State.CLOSED:
        return
    if failed_round:
        entry.rounds += 1
    entry.state = PoolEntry.State.WAITING
    entry.waiting_since = now
    entry.wait_reason = "returned"
    entry.wait_detail = why[:200]
    if a.order_id:
        _assignment_event(a, now=now, reason=why, actor=actor).save()
    _push(agent_ids={a.agent_id}, order_ids=[a.order_id] if a.order_id else [])
    max_rounds = (book or selectors.PolicyBook()).for_entry(entry).row.max_rounds
    if failed_round and rounds_exhausted(entry.rounds, max_rounds=max_rounds):
        _escalate(entry, now=now, why=_("%(n)d offer rounds failed") % {"n": entry.rounds})
    entry.save()
    if entry.state == PoolEntry.State.WAITING:
        request_dispatch()


def _agent_exception(agent_id: int, *, now: datetime, cause: Assignment, what: str) -> None:
    """Count a reject, expiry or going dark; every third in a row is an L3."""
    Agent.objects.filter(pk=agent_id).update(consecutive_exceptions=F("consecutive_exceptions") + 1)
    agent = Agent.objects.select_related("supervisor").get(pk=agent_id)
    count = agent.consecutive_exceptions
    if count == 0 or count % L3_EVERY:
        return
    detail = _("%(agent)s has %(n)d exceptions in a row; the last: %(what)s.") % {
        "agent": agent,
        "n": count,
        "what": what,
    }
    PerformanceRecord.objects.create(
        agent=agent, kind=PerformanceRecord.Kind.CONSECUTIVE_EXCEPTIONS, at=now, count=count, detail=detail
    )
    alert = alert_raise(
        kind=Alert.Kind.AGENT_L3,
        level=3,
        key=f"agent_l3:{agent_id}:{cause.pk}:{cause.state}",
        message=detail,
        agent_id=agent_id,
        region_id=agent.regions.values_list("id", flat=True).first(),
        now=now,
    )
    if alert is not None and agent.supervisor:
        from dashboards.notify import Channel, Message, notify

        payload = {
            "agent": str(agent),
            "detail": detail,
            "url": settings.SITE_URL.rstrip("/") + reverse("admin:agents_agent_change", args=[agent.pk]),
        }
        boss = agent.supervisor
        notify(
            [
                Message("agent_l3", Channel.IN_APP, payload, user=boss, dedupe_key=f"{alert.dedupe_key}:in_app"),
                Message("agent_l3", Channel.EMAIL, payload, user=boss, target=boss.email,
                        dedupe_key=f"{alert.dedupe_key}:email"),
            ],
            now=now,
        )  # fmt: skip


def _escalate(entry: PoolEntry, *, now: datetime, why: str) -> None:
    """L2 for one entry (a failed round); a matching round escalates many with `_escalate_all`."""
    _escalate_all([(entry, why)], now=now)


def _escalate_all(items: list[tuple[PoolEntry, str]], *, now: datetime) -> None:
    """L2: the entries leave automatic matching for the regional supervisor's manual queue,
    each with one alert and one line on its order's timeline, written in bulk: a round with
    nobody to take anything escalates hundreds at once."""
    if not items:
        return
    alerts, events = [], []
    for entry, why in items:
        entry.state = PoolEntry.State.ESCALATED
        entry.escalation_level = 2
        entry.escalated_at = now
        subject = _subject(entry)
        alerts.append(
            Alert(
                kind=Alert.Kind.DISPATCH_L2,
                level=2,
                # Once per waiting spell: a retried task or a second worker finds the same key.
                dedupe_key=f"dispatch_l2:{entry.pk}:{entry.waiting_since.timestamp():.3f}",
                message=(_("%(subject)s needs manual dispatch: %(why)s") % {"subject": subject, "why": why})[
                    :300
                ],
                order_id=entry.order_id or (entry.review.order_id if entry.review_id else None),
                region_id=entry.region_id,
                created_at=now,
            )
        )
        if entry.order_id:
            events.append(
                OrderEvent(
                    order_id=entry.order_id,
                    at=now,
                    kind=OrderEvent.Kind.ASSIGNMENT,
                    actor=DISPATCH.name,
                    reason=_("Escalated to the supervisor (L2): %(why)s") % {"why": why},
                    changes={"escalation_level": 2},
                )
            )
    alerts_raise(alerts)
    OrderEvent.objects.bulk_create(events)
    _push(agent_ids=set(), order_ids=[e.order_id for e in events])


def _subject(entry: PoolEntry) -> str:
    if entry.order_id:
        return entry.order.tag
    if entry.review_id:
        return _("risk review of %(tag)s") % {"tag": entry.review.order.tag}
    return _("inquiry %(id)s") % {"id": entry.inquiry_id}


# --- Manual moves, agents going away, closing ---------------------------------------------
@transaction.atomic
def order_assign(
    *, order_id: int, agent_id: int | None, actor: Actor, force: bool = False, now: datetime | None = None
) -> Assignment | None:
    """A supervisor gives an order to an agent (accepted at once), or with `agent_id=None`
    pulls it back into the pool for matching."""
    now = now or timezone.now()
    order = Order.objects.select_for_update().get(pk=order_id)
    if order.stage in TERMINAL_STAGES:
        raise DispatchError(f"Order {order.tag} is {order.stage}; a closed order cannot be assigned.")
    return _assign_entry(_entry_for(order, now=now), agent_id=agent_id, actor=actor, force=force, now=now)


@transaction.atomic
def inquiry_assign(
    *, inquiry_id: int, agent_id: int | None, actor: Actor, force: bool = False, now: datetime | None = None
) -> Assignment | None:
    """The same by hand for a customer inquiry (an escalated one in the manual queue)."""
    now = now or timezone.now()
    inquiry = Inquiry.objects.select_for_update().filter(pk=inquiry_id).first()
    if inquiry is None:
        raise AssignmentNotFound(f"Inquiry {inquiry_id} does not exist.")
    if inquiry.state == Inquiry.State.CLOSED:
        raise DispatchError(f"Inquiry {inquiry_id} is closed; a closed inquiry cannot be assigned.")
    entry = PoolEntry.objects.select_for_update().get(inquiry=inquiry)
    return _assign_entry(entry, agent_id=agent_id, actor=actor, force=force, now=now)


def _assign_entry(
    entry: PoolEntry, *, agent_id: int | None, actor: Actor, force: bool, now: datetime
) -> Assignment | None:
    live = Assignment.objects.select_for_update().filter(entry=entry, state__in=LIVE_STATES).first()
    agent = None
    if agent_id is not None:
        agent = Agent.objects.select_for_update().filter(pk=agent_id).first()
        if agent is None:
            raise AssignmentNotFound(f"Agent {agent_id} does not exist.")
        if live is not None and live.agent_id == agent.pk and live.state == Assignment.State.ACCEPTED:
            return live
        load = (
            Assignment.objects.filter(agent=agent, state__in=LIVE_STATES)
            .exclude(pk=getattr(live, "pk", None))
            .count()
        )
        if load >= agent.capacity and not force:
            raise CapacityExceeded(
                f"{agent} already has {load} of {agent.capacity} items; send force=true to assign anyway."
            )
    if live is not None:
        live.state = Assignment.State.RELEASED
        live.closed_at = now
        live.reason = f"reassigned by {actor.name}"[:300]
        live.save(update_fields=["state", "closed_at", "reason"])
        if entry.order_id:
            _assignment_event(
                live, now=now, reason=_("Taken back by %(who)s") % {"who": actor.name}, actor=actor
            ).save()
        _push(agent_ids={live.agent_id}, order_ids=[entry.order_id] if entry.order_id else [])
    if agent is None:
        if entry.order_id:
            Order.objects.filter(pk=entry.order_id).update(owner=None, updated_at=now)
        if entry.inquiry_id:
            Inquiry.objects.filter(pk=entry.inquiry_id).update(state=Inquiry.State.OPEN, agent=None)
        if entry.review_id:
            from riskcontrol.models import Review

            Review.objects.filter(pk=entry.review_id).update(agent=None)
        entry.state = PoolEntry.State.WAITING
        entry.waiting_since = now
        entry.escalation_level = 0
        entry.wait_reason = "returned"
        entry.wait_detail = f"pulled back by {actor.name}"[:200]
        entry.save()
        request_dispatch()
        return None
    a = Assignment.objects.create(
        entry=entry,
        order_id=entry.order_id,
        inquiry_id=entry.inquiry_id,
        review_id=entry.review_id,
        agent=agent,
        state=Assignment.State.ACCEPTED,
        round=entry.rounds + 1,
        manual=True,
        assigned_by_id=actor.user_id,
        offered_at=now,
        responded_at=now,
        reason=f"assigned by {actor.name}"[:300],
    )
    entry.state = PoolEntry.State.ASSIGNED
    entry.wait_reason = ""
    entry.save()
    _take_ownership(
        a,
        agent=agent,
        now=now,
        reason=_("Assigned by hand to %(agent)s by %(who)s") % {"agent": agent, "who": actor.name},
        actor=actor,
    )
    return a


def _entry_for(order: Order, *, now: datetime) -> PoolEntry:
    entry = PoolEntry.objects.select_for_update().filter(order=order).first()
    if entry is None:
        entry = PoolEntry.objects.create(
            kind=PoolEntry.Kind.ORDER,
            order=order,
            channel_id=order.channel_id,
            customer_id=order.customer_id,
            category=order.category,
            state=PoolEntry.State.ESCALATED,
            ready_at=now,
            waiting_since=now,
        )
    return entry


def agent_release_offers(*, agent: Agent, now: datetime, why: str) -> int:
    """An agent went offline: their open offers go back to the pool at once."""
    offers = list(
        Assignment.objects.select_for_update()
        .filter(agent=agent, state=Assignment.State.OFFERED)
        .order_by("pk")
    )
    for a in offers:
        a.state = Assignment.State.RELEASED
        a.closed_at = now
        a.reason = why[:300]
        a.save(update_fields=["state", "closed_at", "reason"])
        _back_to_pool(a, now=now, why=_("Released: %(why)s") % {"why": why}, failed_round=False)
    if offers:
        _agent_exception(agent.pk, now=now, cause=offers[-1], what=_("went offline with open offers"))
    return len(offers)


def dispatch_order_closed(*, order: Order, now: datetime) -> None:
    """The order reached done or cancelled: its work is complete and the agent's slot frees."""
    entry = PoolEntry.objects.select_for_update().filter(order=order).first()
    if entry is None:
        return
    freed: set[int] = set()
    for a in Assignment.objects.select_for_update().filter(entry=entry, state__in=LIVE_STATES):
        a.state = (
            Assignment.State.COMPLETED
            if a.state == Assignment.State.ACCEPTED and order.stage == Stage.DONE
            else Assignment.State.CANCELLED
        )
        a.closed_at = now
        a.save(update_fields=["state", "closed_at"])
        freed.add(a.agent_id)
    entry.state = PoolEntry.State.CLOSED
    entry.wait_reason = ""
    entry.save(update_fields=["state", "wait_reason", "updated_at"])
    if freed:
        from agents.services import agent_profile_refresh

        for agent_id in freed:
            agent_profile_refresh(agent_id=agent_id, now=now)
        _push(agent_ids=freed, order_ids=[])
        request_dispatch()


def dispatch_order_reopened(*, order: Order, now: datetime) -> None:
    """An order came back from quarantine or an exception with no owner: it enters the pool,
    or its closed entry waits again."""
    if order.owner_id is not None:
        return
    entry = PoolEntry.objects.select_for_update().filter(order=order).first()
    if entry is None:
        pool_add_orders(orders=[order], now=now)
        return
    if entry.state == PoolEntry.State.CLOSED:
        entry.state = PoolEntry.State.WAITING
        entry.ready_at = entry.waiting_since = now
        entry.rounds = 0
        entry.escalation_level = 0
        entry.wait_reason = "queued"
        entry.wait_detail = ""
        entry.save()
        request_dispatch()


def dispatch_order_paused(*, order: Order, now: datetime, why: str) -> None:
    """The order went into an exception. If an agent already owns it they keep it (the case has
    its own owner, and the order comes back to them); if it was still waiting or on offer it
    leaves the pool until the exception is resolved (`dispatch_order_reopened`)."""
    entry = PoolEntry.objects.select_for_update().filter(order=order).first()
    if entry is None or entry.state in (PoolEntry.State.CLOSED, PoolEntry.State.ASSIGNED):
        return
    freed = set()
    for a in Assignment.objects.select_for_update().filter(entry=entry, state=Assignment.State.OFFERED):
        a.state = Assignment.State.RELEASED
        a.closed_at = now
        a.reason = why[:300]
        a.save(update_fields=["state", "closed_at", "reason"])
        freed.add(a.agent_id)
        _assignment_event(a, now=now, reason=_("Withdrawn: %(why)s") % {"why": why}).save()
    entry.state = PoolEntry.State.CLOSED
    entry.wait_reason = ""
    entry.save(update_fields=["state", "wait_reason", "updated_at"])
    if freed:
        _push(agent_ids=freed, order_ids=[order.pk])
        request_dispatch()


def dispatch_order_held(*, order: Order, now: datetime, why: str) -> None:
    """The order was quarantined: nobody may work on it until a reviewer releases it. Its
    offers and owner are withdrawn and its pool entry closes (`dispatch_order_reopened`
    opens it again)."""
    entry = PoolEntry.objects.select_for_update().filter(order=order).first()
    if entry is None or entry.state == PoolEntry.State.CLOSED:
        return
    freed = set()
    for a in Assignment.objects.select_for_update().filter(entry=entry, state__in=LIVE_STATES):
        a.state = Assignment.State.RELEASED
        a.closed_at = now
        a.reason = why[:300]
        a.save(update_fields=["state", "closed_at", "reason"])
        freed.add(a.agent_id)
        _assignment_event(a, now=now, reason=_("Withdrawn: %(why)s") % {"why": why}).save()
    if order.owner_id:
        Order.objects.filter(pk=order.pk).update(owner=None, updated_at=now)
        order.owner_id = None
    entry.state = PoolEntry.State.CLOSED
    entry.wait_reason = ""
    entry.save(update_fields=["state", "wait_reason", "updated_at"])
    if freed:
        _push(agent_ids=freed, order_ids=[order.pk])
        request_dispatch()


# --- Risk reviews -------------------------------------------------------------------------


def review_pool_add(*, reviews: list[tuple], now: datetime) -> list[PoolEntry]:
    """Review tasks for quarantined orders, given as (review, region id): matched like any
    item, but only to people with the `risk_review` skill (the policy book enforces it)."""
    entries = []
    for review, region_id in reviews:
        order = review.order
        expedited = order.urgency == Order.Urgency.EXPEDITED
        entries.append(
            PoolEntry(
                kind=PoolEntry.Kind.REVIEW,
                review_id=review.pk,
                channel_id=order.channel_id,
                customer_id=order.customer_id,
                region_id=region_id,
                category=REVIEW_SKILL,
                skills=[REVIEW_SKILL],
                expedited=expedited,
                is_vip=order.is_vip,
                urgent=expedited,
                ready_at=now,
                waiting_since=now,
            )
        )
    PoolEntry.objects.bulk_create(entries)
    if entries:
        request_dispatch()
    return entries


def review_pool_close(*, review, now: datetime, done: bool) -> None:
    """The review was decided (`done`) or withdrawn: its task leaves the pool and the
    reviewer's slot frees."""
    entry = PoolEntry.objects.select_for_update().filter(review=review).first()
    if entry is None:
        return
    freed = set()
    for a in Assignment.objects.select_for_update().filter(entry=entry, state__in=LIVE_STATES):
        a.state = (
            Assignment.State.COMPLETED
            if done and a.state == Assignment.State.ACCEPTED
            else Assignment.State.CANCELLED
        )
        a.closed_at = now
        a.save(update_fields=["state", "closed_at"])
        freed.add(a.agent_id)
    if entry.state != PoolEntry.State.CLOSED:
        entry.state = PoolEntry.State.CLOSED
        entry.wait_reason = ""
        entry.save(update_fields=["state", "wait_reason", "updated_at"])
    if freed:
        _push(agent_ids=freed, order_ids=[])
        request_dispatch()


# --- Inquiries --------------------------------------------------------------------------
@transaction.atomic
def inquiry_create(
    *,
    channel: Channel,
    account_id: str,
    customer_name: str,
    text: str,
    vip: bool,
    now: datetime | None = None,
) -> Inquiry:
    now = now or timezone.now()
    customer = None
    if account_id:
        customer, _created = Customer.objects.get_or_create(
            channel=channel,
            account_key=f"acct:{account_id}",
            defaults={"account_id": account_id, "name": customer_name},
        )
    is_vip = vip or bool(customer and customer.is_vip)
    skills = sorted(detect_skills(skill_text(text), selectors.skill_keywords()))
    inquiry = Inquiry.objects.create(
        channel=channel,
        customer=customer,
        account_key=f"acct:{account_id}" if account_id else "",
        customer_name=customer_name or (customer.name if customer else ""),
        is_vip=is_vip,
        text=text,
        skills=skills,
        created_at=now,
    )
    PoolEntry.objects.create(
        kind=PoolEntry.Kind.INQUIRY,
        inquiry=inquiry,
        channel=channel,
        customer=customer,
        skills=skills,
        is_vip=is_vip,
        ready_at=now,
        waiting_since=now,
    )
    request_dispatch()
    return inquiry


@transaction.atomic
def inquiry_close(
    *, inquiry_id: int, actor: Actor, agent: Agent | None, now: datetime | None = None
) -> Inquiry:
    """The conversation is over: the agent's slot frees for the next one."""
    now = now or timezone.now()
    inquiry = Inquiry.objects.select_for_update().filter(pk=inquiry_id).first()
    if inquiry is None or (agent is not None and inquiry.agent_id != agent.pk):
        raise AssignmentNotFound(f"Inquiry {inquiry_id} does not exist or is not yours.")
    if inquiry.state == Inquiry.State.CLOSED:
        raise DispatchError("This inquiry is already closed.")
    inquiry.state = Inquiry.State.CLOSED
    inquiry.closed_at = now
    inquiry.save(update_fields=["state", "closed_at"])
    freed = set()
    for a in Assignment.objects.select_for_update().filter(inquiry=inquiry, state__in=LIVE_STATES):
        a.state = (
            Assignment.State.COMPLETED if a.state == Assignment.State.ACCEPTED else Assignment.State.CANCELLED
        )
        a.closed_at = now
        a.save(update_fields=["state", "closed_at"])
        freed.add(a.agent_id)
    PoolEntry.objects.filter(inquiry=inquiry).update(state=PoolEntry.State.CLOSED, wait_reason="")
    if freed:
        _push(agent_ids=freed, order_ids=[])
        request_dispatch()
    return inquiry


def queue_wait_alerts(*, now: datetime | None = None) -> int:
    """Alert when the oldest inquiry waiting for a skill group passed the group's threshold."""
    now = now or timezone.now()
    waiting = PoolEntry.objects.filter(
        kind=PoolEntry.Kind.INQUIRY, state__in=[PoolEntry.State.WAITING, PoolEntry.State.ESCALATED]
    ).values_list("id", "skills", "ready_at")
    oldest: dict[str, tuple[int, datetime]] = {}
    for entry_id, skills, ready_at in waiting.order_by("ready_at", "id"):
        for code in skills or ["general"]:
            oldest.setdefault(code, (entry_id, ready_at))
    if not oldest:
        return 0
    skills = {s.code: s for s in Skill.objects.filter(code__in=list(oldest))}
    raised = 0
    for code, (entry_id, ready_at) in oldest.items():
        skill = skills.get(code)
        threshold = skill.wait_alert_seconds if skill else 180
        waited = (now - ready_at).total_seconds()
        if waited < threshold:
            continue
        name = skill.name if skill else _("General")
        count = sum(1 for _id, s, _r in waiting if code in (s or ["general"]))
        alert = alert_raise(
            kind=Alert.Kind.QUEUE_WAIT,
            level=1,
            key=f"queue_wait:{code}:{entry_id}",
            message=_("%(n)d inquiries wait for %(skill)s; the oldest for %(min)d min")
            % {"n": count, "skill": name, "min": waited // 60},
            skill_id=skill.pk if skill else None,
            now=now,
        )
        raised += alert is not None
    return raised


# --- Audit and pushes -------------------------------------------------------------------
def _assignment_event(
    a: Assignment, *, now: datetime, reason: str, owner: int | None = None, actor: Actor = DISPATCH
) -> OrderEvent:
    changes = {
        "assignment": a.pk,
        "agent": a.agent_id,
        "state": a.state,
        "round": a.round,
    }
    if a.state == Assignment.State.OFFERED:
        changes |= {
            "score": a.score,
            "breakdown": a.breakdown,
            "policy": a.policy_kind,
            "distance_km": a.distance_km,
            "expires_at": a.expires_at.isoformat() if a.expires_at else None,
        }
    if owner is not None:
        changes["owner"] = owner
    return OrderEvent(
        order_id=a.order_id,
        at=now,
        kind=OrderEvent.Kind.ASSIGNMENT,
        actor=actor.name[:100],
        actor_user_id=actor.user_id,
        reason=reason,
        changes=changes,
    )


def _push(*, agent_ids: set[int], order_ids: list[int]) -> None:
    from dashboards.events import publish_agent_changed, publish_orders_changed

    agents = sorted(agent_ids)
    orders = [i for i in order_ids if i]
    transaction.on_commit(lambda: (publish_agent_changed(agents), publish_orders_changed(orders)))
