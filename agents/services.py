"""Writes to agents: status and location from their phones, ratings from customers, and the
profile recomputed from what they did."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import Agent, Rating
from dispatch.engine.profile import good_rate, quality_weight
from orders.actors import Actor
from orders.models import Order, OrderEvent
from orders.states import TransitionError


class RatingRefused(TransitionError):
    code = "rating_refused"


@transaction.atomic
def agent_set_status(*, agent: Agent, status: str, now: datetime | None = None) -> Agent:
    """Online agents receive offers; going offline hands open offers back at once."""
    from dispatch.services import agent_release_offers, request_dispatch

    now = now or timezone.now()
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    previous = agent.status
    agent.status = status
    agent.status_changed_at = now
    agent.save(update_fields=["status", "status_changed_at"])
    if status == Agent.Status.OFFLINE and previous != Agent.Status.OFFLINE:
        agent_release_offers(agent=agent, now=now, why=_("%(agent)s went offline") % {"agent": agent})
    if status == Agent.Status.ONLINE and previous != Agent.Status.ONLINE:
        request_dispatch()
    return agent


@transaction.atomic
def agent_set_location(*, agent: Agent, lat: Decimal, lng: Decimal, now: datetime | None = None) -> Agent:
    now = now or timezone.now()
    Agent.objects.filter(pk=agent.pk).update(latitude=lat, longitude=lng, location_at=now)
    agent.latitude, agent.longitude, agent.location_at = lat, lng, now
    return agent


@transaction.atomic
def rating_record(
    *,
    order_id: int,
    score: int,
    on_time: bool | None,
    fixed_first_time: bool | None,
    actor: Actor,
    now: datetime | None = None,
) -> Rating:
    """A customer's rating, credited to the agent who owns the order; once per order."""
    now = now or timezone.now()
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None:
        raise Order.DoesNotExist(f"Order {order_id} does not exist.")
    agent = Agent.objects.filter(user_id=order.owner_id).first() if order.owner_id else None
    if agent is None:
        raise RatingRefused(f"Order {order.tag} has no agent to credit the rating to.")
    if Rating.objects.filter(order=order).exists():
        raise RatingRefused(f"Order {order.tag} is already rated.")
    rating = Rating.objects.create(
        order=order,
        agent=agent,
        score=score,
        on_time=on_time,
        fixed_first_time=fixed_first_time,
        created_at=now,
    )
    OrderEvent(
        order=order,
        at=now,
        kind=OrderEvent.Kind.EDIT,
        actor=actor.name[:100],
        actor_user_id=actor.user_id,
        reason=_("Rated %(score)d/5 for %(agent)s") % {"score": score, "agent": agent},
        changes={
            "rating": score,
            "on_time": on_time,
            "fixed_first_time": fixed_first_time,
            "agent": agent.pk,
        },
    ).save()
    agent_profile_refresh(agent_id=agent.pk, now=now)
    return rating


def agent_profile_refresh(*, agent_id: int, now: datetime | None = None) -> Agent:
    """Recompute the profile from the last 30 days of ratings and assignments."""
    from dispatch.models import Assignment

    now = now or timezone.now()
    month, week = now - timedelta(days=30), now - timedelta(days=7)
    r = Rating.objects.filter(agent_id=agent_id, created_at__gte=month).aggregate(
        n=Count("id"),
        good=Count("id", filter=Q(score__gte=4)),
        n7=Count("id", filter=Q(created_at__gte=week)),
        good7=Count("id", filter=Q(created_at__gte=week, score__gte=4)),
        timed=Count("id", filter=Q(on_time__isnull=False)),
        on_time=Count("id", filter=Q(on_time=True)),
        fix_known=Count("id", filter=Q(fixed_first_time__isnull=False)),
        fixed=Count("id", filter=Q(fixed_first_time=True)),
    )
    answered = Assignment.objects.filter(agent_id=agent_id, offered_at__gte=month, manual=False).aggregate(
        taken=Count(
            "id",
            filter=Q(state__in=["accepted", "completed"]) | Q(state="cancelled", responded_at__isnull=False),
        ),
        refused=Count("id", filter=Q(state__in=["rejected", "expired"])),
    )
    handled = Assignment.objects.filter(
        agent_id=agent_id, state="completed", closed_at__gte=month, responded_at__isnull=False
    ).values_list("responded_at", "closed_at")
    minutes = [(closed - took).total_seconds() / 60 for took, closed in handled]
    agent = Agent.objects.get(pk=agent_id)
    agent.ratings_30d = r["n"]
    agent.good_rate_30d = good_rate(r["good"], r["n"])
    agent.good_rate_7d = good_rate(r["good7"], r["n7"])
    agent.on_time_rate = good_rate(r["on_time"], r["timed"])
    agent.first_fix_rate = good_rate(r["fixed"], r["fix_known"])
    agent.acceptance_rate = good_rate(answered["taken"], answered["taken"] + answered["refused"])
    agent.avg_handling_minutes = round(sum(minutes) / len(minutes), 1) if minutes else None
    agent.quality_weight = quality_weight(
        good_rate_7d=agent.good_rate_7d,
        good_rate_30d=agent.good_rate_30d,
        on_time_rate=agent.on_time_rate,
        first_fix_rate=agent.first_fix_rate,
        acceptance_rate=agent.acceptance_rate,
        consecutive_exceptions=agent.consecutive_exceptions,
        ratings_30d=agent.ratings_30d,
    )
    agent.profile_updated_at = now
    agent.save(
        update_fields=[
            "ratings_30d",
            "good_rate_30d",
            "good_rate_7d",
            "on_time_rate",
            "first_fix_rate",
            "acceptance_rate",
            "avg_handling_minutes",
            "quality_weight",
            "profile_updated_at",
        ]
    )
    return agent


def agent_profiles_refresh_all(*, now: datetime | None = None) -> int:
    """Nightly: windows slide even for agents with no new events."""
    ids = list(Agent.objects.values_list("pk", flat=True))
    for agent_id in ids:
        agent_profile_refresh(agent_id=agent_id, now=now)
    return len(ids)
