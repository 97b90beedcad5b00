"""The overdue ladder (seed 004): a pass over the orders whose due time has passed that takes
each one rung up — L1 tell the owner (in-app and their team's WeCom robot), L2 still not
handled a step later: hand it to the owner's backup, L3 another step later: the supervisor by
e-mail and SMS.

The level reached is stored on the order in the same transaction as the messages, so no one
is told twice; the rows are claimed with SKIP LOCKED so two scanners share the work instead
of repeating it, and every message and alert carries a dedupe key per order, stage stay and
level as the last guard. The pass reads the overdue orders through the partial index
`order_sla_climbing` (due_at, while the level is below 3): its cost follows the overdue
orders, not all orders, and people, regions and contacts are loaded once per pass.

Decisions the seed leaves open:
- L2 needs an owner whose agent has a backup who is not offline. Otherwise (no owner, no
  backup, backup offline, the hand-over refused) the order stays where it is and the
  supervisors are told and alerted at L2 that they must reassign it by hand: handing it to
  someone offline, or back to the pool, would hide it again.
- "Handled" means the order left the stage: a stage change resets the ladder (order_transition).
- One rung per pass: after an outage an order climbs L1, then L2 a step later, never two at once.
- Supervisors of an order: its owner's (agent's) supervisor for L3, else the supervisors of the
  region whose provinces contain the order's province, else everyone in the supervisor group.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Prefetch, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from agents.models import Agent, Region, Team, UserContact
from dashboards.alerts import alerts_raise
from dashboards.models import Alert, NotificationTemplate
from dashboards.notify import Message, notify, order_context
from dispatch.services import AssignmentNotFound, DispatchError, order_assign
from orders.actors import system_actor
from orders.models import STAGE_LABELS, Order, OrderEvent
from orders.services import _after_commit_push
from orders.states import TERMINAL_STAGES, Role, Stage

logger = logging.getLogger(__name__)

ESCALATION_BATCH = 2000  # orders claimed per pass (one transaction)
SLA_ACTOR = "sla"
TOP_LEVEL = 3
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Channel = NotificationTemplate.Channel


@dataclass
class ScanReport:
    selected: int = 0  # overdue orders claimed this pass
    l1: list[int] = field(default_factory=list)
    l2: list[int] = field(default_factory=list)
    l3: list[int] = field(default_factory=list)
    reassigned: int = 0
    notifications: int = 0
    alerts: int = 0

    @property
    def escalated(self) -> int:
        return len(self.l1) + len(self.l2) + len(self.l3)


def escalation_step() -> timedelta:
    return timedelta(minutes=settings.SLA_ESCALATION_STEP_MINUTES)


def overdue_orders(*, now: datetime, step: timedelta):
    """The orders whose next rung is due: overdue, still climbing, and either not yet told
    or told at least a step ago. Matches the partial index's predicate (due_at not null and
    level below 3) so PostgreSQL reads only that index."""
    return (
        Order.objects.filter(due_at__isnull=False, due_at__lte=now, sla_level__lt=TOP_LEVEL)
        # Closed orders carry no due time; this only guards against one left behind. Written as
        # an exclusion so the planner has no stage index to AND with the due-time index (it
        # did, reading every open order's index entry).
        .exclude(stage__in=[s.value for s in TERMINAL_STAGES])
        .filter(Q(sla_level=0) | Q(sla_level_at__lte=now - step))
        .order_by("due_at")
    )


# What a pass reads of each order and its owner: a narrow row is most of a claim's cost.
CLAIMED_FIELDS = (
    "id", "tag", "stage", "stage_entered_at", "due_at", "sla_level", "sla_level_at", "province", "owner_id",
    "owner__id", "owner__username", "owner__first_name", "owner__last_name", "owner__email", "owner__is_active",
)  # fmt: skip


def lock_overdue(*, now: datetime, step: timedelta, limit: int) -> list[Order]:
    """Claim up to `limit` of them, oldest due first; rows another scanner (or a transition)
    holds are skipped, not waited for."""
    return list(overdue_claim(now=now, step=step, limit=limit))


def overdue_claim(*, now: datetime, step: timedelta, limit: int):
    """The claim as a query (for `lock_overdue`, and for EXPLAIN in the benchmark)."""
    return (
        overdue_orders(now=now, step=step)
        .select_related("owner")
        .only(*CLAIMED_FIELDS)
        .select_for_update(skip_locked=True, of=("self",))[:limit]
    )


def sla_scan(*, now: datetime | None = None, limit: int = ESCALATION_BATCH) -> ScanReport:
    """One pass of the ladder, in one transaction: each claimed order climbs one rung."""
    now = now or timezone.now()
    report = ScanReport()
    with transaction.atomic():
        orders = lock_overdue(now=now, step=escalation_step(), limit=limit)
        report.selected = len(orders)
        if not orders:
            return report
        # Messages, alerts and audit lines are written in the site's language, and activating it
        # once makes the per-order message context four times cheaper.
        with translation.override(settings.LANGUAGE_CODE):
            _Pass(orders=orders, now=now, report=report).run()
    return report


def _micros(value: datetime | None) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1) if value is not None else 0


def _name(user) -> str:
    if user is None:
        return "—"
    agent = getattr(user, "_sla_agent", None)
    if agent is not None:
        return agent.display_name
    return user.get_full_name() or user.get_username()


class _Pass:
    """The work of one pass: people loaded once for the whole batch, then one rung per order,
    and every write in bulk (except the L2 hand-overs, which go through dispatch)."""

    def __init__(self, *, orders: list[Order], now: datetime, report: ScanReport) -> None:
        self.orders = orders
        self.now = now
        self.report = report
        self.messages: list[Message] = []
        self.alerts: list[Alert] = []
        self.events: list[OrderEvent] = []
        self.levels: dict[int, list[int]] = defaultdict(list)

    # --- Loading ------------------------------------------------------------------------
    def _load(self) -> None:
        owner_ids = {o.owner_id for o in self.orders if o.owner_id}
        teams = Prefetch("teams", queryset=Team.objects.order_by("code"))
        backup_teams = Prefetch("backup__teams", queryset=Team.objects.order_by("code"))
        self.agents: dict[int, Agent] = {
            a.user_id: a
            for a in Agent.objects.filter(user_id__in=owner_ids)
            .select_related("user", "backup__user", "supervisor")
            .prefetch_related(teams, backup_teams)
        }
        for order in self.orders:
            if order.owner is not None:
                order.owner._sla_agent = self.agents.get(order.owner_id)
        for agent in self.agents.values():
            if agent.backup is not None:
                agent.backup.user._sla_agent = agent.backup

        self.regions: dict[int, Region] = {}
        self.region_of: dict[str, Region] = {}
        for region in Region.objects.order_by("code").prefetch_related("supervisors"):
            self.regions[region.pk] = region
            for province in region.provinces or []:
                self.region_of.setdefault(str(province).strip(), region)

        self.group_supervisors: list = []
        if any(not self._region_supervisors(o) for o in self.orders):
            User = get_user_model()
            self.group_supervisors = list(
                User.objects.filter(groups__name=Role.SUPERVISOR, is_active=True).distinct().order_by("pk")
            )

        people = set(owner_ids) | {u.pk for u in self.group_supervisors}
        for agent in self.agents.values():
            if agent.backup is not None:
                people.add(agent.backup.user_id)
            if agent.supervisor_id:
                people.add(agent.supervisor_id)
        for region in self.regions.values():
            people |= {u.pk for u in region.supervisors.all()}
        self.phones = dict(
            UserContact.objects.filter(user_id__in=people).exclude(phone="").values_list("user_id", "phone")
        )

    def _region(self, order: Order) -> Region | None:
        return self.region_of.get((order.province or "").strip())

    def _region_supervisors(self, order: Order) -> list:
        region = self._region(order)
        if region is None:
            return []
        return [u for u in region.supervisors.all() if u.is_active]

    def _supervisors(self, order: Order) -> list:
        return self._region_supervisors(order) or self.group_supervisors

    def _robot(self, agent: Agent | None, order: Order) -> str:
        """The robot that reaches `agent`'s team (their first team that has one), else the
        order's region robot."""
        if agent is not None:
            for team in agent.teams.all():
                if team.wecom_webhook_url:
                    return team.wecom_webhook_url
        region = self._region(order)
        return region.wecom_webhook_url if region is not None else ""

    # --- Messages -----------------------------------------------------------------------
    def _key(self, order: Order, level: int) -> str:
        # Per order, stay in the stage (its start and deadline) and rung: a new stay is a new
        # ladder, a second scanner or a stale read of this one finds the key taken.
        return f"sla:{order.pk}:{_micros(order.stage_entered_at)}:{_micros(order.due_at)}:L{level}"

    def _payload(self, order: Order, **extra) -> dict:
        minutes = max(0, int((self.now - order.due_at).total_seconds() // 60))
        return {"order": order_context(order), "minutes_over": minutes, **extra}

    def _to_user(self, template: str, channel: str, user, order: Order, level: int, payload: dict) -> None:
        if channel == Channel.IN_APP:
            target = ""
        elif channel == Channel.EMAIL:
            target = user.email or ""
        else:  # SMS
            target = self.phones.get(user.pk, "")
        if channel != Channel.IN_APP and not target:
            return
        self.messages.append(
            Message(
                template=template,
                channel=channel,
                payload=payload,
                user=user,
                target=target,
                order_id=order.pk,
                dedupe_key=f"{self._key(order, level)}:{channel}:u{user.pk}",
            )
        )

    def _to_robot(self, template: str, url: str, order: Order, level: int, payload: dict, mention) -> None:
        if not url:
            return
        phones = [self.phones[u.pk] for u in mention if u is not None and u.pk in self.phones]
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        self.messages.append(
            Message(
                template=template,
                channel=Channel.WECOM,
                payload={**payload, "mentioned_mobile_list": phones},
                target=url,
                order_id=order.pk,
                dedupe_key=f"{self._key(order, level)}:wecom:{digest}",
            )
        )

    def _alert(self, order: Order, kind: str, level: int, message: str, agent: Agent | None) -> None:
        region = self._region(order)
        self.alerts.append(
            Alert(
                kind=kind,
                level=level,
                message=message,
                order=order,
                region=region,
                agent=agent,
                dedupe_key=self._key(order, level),
                created_at=self.now,
            )
        )

    def _event(self, order: Order, level: int, reason: str, **changes) -> None:
        self.events.append(
            OrderEvent(
                order=order,
                at=self.now,
                kind=OrderEvent.Kind.NOTIFICATION,
                actor=SLA_ACTOR,
                reason=reason,
                changes={"sla_level": [level - 1, level], **changes},
            )
        )
        self.levels[level].append(order.pk)

    # --- The rungs ----------------------------------------------------------------------
    def run(self) -> None:
        self._load()
        for order in self.orders:
            level = order.sla_level + 1
            if level == 1:
                self._l1(order)
            elif level == 2:
                self._l2(order)
            else:
                self._l3(order)
        for level, ids in sorted(self.levels.items()):
            Order.objects.filter(pk__in=ids).update(
                sla_level=level, sla_level_at=self.now, updated_at=self.now
            )
        OrderEvent.objects.bulk_create(self.events)
        self.report.notifications = len(notify(self.messages, now=self.now))
        self.report.alerts = len(alerts_raise(self.alerts))
        self.report.l1, self.report.l2, self.report.l3 = (self.levels[n] for n in (1, 2, 3))
        _after_commit_push([o.pk for o in self.orders])  # every claimed order climbed a rung

    def _names(self, users: list) -> str:
        return ", ".join(_name(u) for u in users) or _("nobody (no supervisor configured)")

    def _stage(self, order: Order) -> str:
        return str(STAGE_LABELS[Stage(order.stage)])

    def _l1(self, order: Order) -> None:
        owner = order.owner
        agent = self.agents.get(order.owner_id) if owner is not None else None
        payload = self._payload(order, owner=_name(owner))
        told = [owner] if owner is not None else self._supervisors(order)
        for user in told:
            self._to_user("sla_overdue", Channel.IN_APP, user, order, 1, payload)
        self._to_robot("sla_overdue", self._robot(agent, order), order, 1, payload, mention=[owner])
        who = self._names(told)
        minutes = payload["minutes_over"]
        self._alert(
            order,
            Alert.Kind.SLA_OVERDUE,
            1,
            _("%(tag)s is overdue in %(stage)s by %(minutes)d min (L1): %(who)s told.")
            % {"tag": order.tag, "stage": self._stage(order), "minutes": minutes, "who": who},
            agent,
        )
        self._event(
            order,
            1,
            _("Overdue by %(minutes)d min: L1, %(who)s told.") % {"minutes": minutes, "who": who},
            told=[u.get_username() for u in told],
        )

    def _l2(self, order: Order) -> None:
        owner = order.owner
        agent = self.agents.get(order.owner_id) if owner is not None else None
        backup = agent.backup if agent is not None else None
        why = ""
        if owner is None:
            why = _("it has no owner")
        elif backup is None:
            why = _("%(owner)s has no backup") % {"owner": _name(owner)}
        elif backup.status == Agent.Status.OFFLINE:
            why = _("the backup %(backup)s is offline") % {"backup": backup.display_name}
        else:
            try:
                order_assign(
                    order_id=order.pk,
                    agent_id=backup.pk,
                    actor=system_actor(SLA_ACTOR),
                    force=True,  # seed 004: the backup takes it over whatever their load
                    now=self.now,
                )
            except (DispatchError, AssignmentNotFound) as exc:
                why = _("handing it to %(backup)s failed: %(error)s") % {
                    "backup": backup.display_name,
                    "error": exc,
                }
        minutes = max(0, int((self.now - order.due_at).total_seconds() // 60))
        if not why:
            self.report.reassigned += 1
            payload = self._payload(order, owner=_name(owner), backup=backup.display_name)
            self._to_user("sla_backup", Channel.IN_APP, backup.user, order, 2, payload)
            self._to_robot("sla_backup", self._robot(backup, order), order, 2, payload, mention=[backup.user])
            text = _(
                "%(tag)s still overdue after %(minutes)d min (L2): handed from %(owner)s to the backup %(backup)s."
            ) % {
                "tag": order.tag,
                "minutes": minutes,
                "owner": _name(owner),
                "backup": backup.display_name,
            }
            self._alert(order, Alert.Kind.SLA_L2, 2, text, agent)
            self._event(order, 2, text, owner=[owner.get_username(), backup.user.get_username()])
            return
        told = self._supervisors(order)
        payload = self._payload(order, owner=_name(owner), backup=backup.display_name if backup else "—")
        for user in told:
            self._to_user("sla_overdue", Channel.IN_APP, user, order, 2, payload)
        region = self._region(order)
        self._to_robot(
            "sla_overdue", region.wecom_webhook_url if region else "", order, 2, payload, mention=told
        )
        text = _(
            "%(tag)s still overdue after %(minutes)d min (L2) and not handed over: %(why)s. "
            "%(who)s must reassign it."
        ) % {"tag": order.tag, "minutes": minutes, "why": why, "who": self._names(told)}
        self._alert(order, Alert.Kind.SLA_L2, 2, text, agent)
        self._event(order, 2, text, told=[u.get_username() for u in told])

    def _l3(self, order: Order) -> None:
        owner = order.owner
        agent = self.agents.get(order.owner_id) if owner is not None else None
        boss = agent.supervisor if agent is not None and agent.supervisor_id else None
        told = [boss] if boss is not None and boss.is_active else self._supervisors(order)
        backup = agent.backup if agent is not None else None
        payload = self._payload(order, owner=_name(owner), backup=backup.display_name if backup else "—")
        for user in told:
            for channel in (Channel.EMAIL, Channel.SMS, Channel.IN_APP):
                self._to_user("sla_supervisor", channel, user, order, 3, payload)
        who = self._names(told)
        text = _("%(tag)s still overdue after %(minutes)d min (L3): %(who)s told by e-mail and SMS.") % {
            "tag": order.tag,
            "minutes": payload["minutes_over"],
            "who": who,
        }
        self._alert(order, Alert.Kind.SLA_L3, 3, text, agent)
        self._event(order, 3, text, told=[u.get_username() for u in told])
