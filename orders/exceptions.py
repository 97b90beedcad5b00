"""Exception cases: raising one on an order (its type routes it to a team and an owner),
resolving it, and keeping cases in step with plain stage moves in and out of `exception`.

Routes (ExceptionType.route):
- reconfirm, stock_lock, hold: the order moves to the exception stage (held in the stage it
  was in) and an open case goes to an agent of the type's team; the owner is told in-app and
  the type's e-mail and WeCom targets (procurement, for stock) are told too.
- reschedule: the customer asked to delay. The order is *not* held: the request is appended to
  its note and its due time moves to `delay_until`. Nothing is left to work on, so the case is
  stored already resolved (as the record of the request) and the customer gets an SMS at once.

Resolving returns the order to the stage it was held in and sends the customer the type's SMS
template. Everything happens in the caller's transaction; messages are written with it and sent
after commit, so a failing SMS gateway never blocks an order.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _

from agents.models import Agent
from dashboards.notify import Message, notify, order_context
from orders import services
from orders.actors import Actor
from orders.models import ExceptionCase, ExceptionType, Order, OrderEvent
from orders.states import (
    TERMINAL_STAGES,
    TRANSITIONS,
    Role,
    RoleMayNotTransition,
    Stage,
    TransitionError,
    role_may,
)

logger = logging.getLogger(__name__)

NOTE_MAX = 2000
RESOLUTION_MAX = 500  # it goes into an SMS: a sentence or two, not a report

OPEN = ExceptionCase.Status.OPEN
RESOLVED = ExceptionCase.Status.RESOLVED
Route = ExceptionType.Route

# Roles whose members act on any order they can see; someone with none of these but `agent`
# acts only on their own orders and the cases they own.
_BACK_OFFICE = frozenset({Role.CUSTOMER_SERVICE, Role.WAREHOUSE, Role.SUPERVISOR, Role.ADMIN, Role.SYSTEM})
# Moving a due time and writing in the note is a promise to the customer: whoever may edit the
# note may reschedule (customer service, agents, supervisors, admins), and the system.
_RESCHEDULE_ROLES = services.EDITABLE_BY["note"] | {Role.SYSTEM}

# Agents are ordered online first (they can start now), then busy, on a break, offline.
_STATUS_RANK = Case(
    *(When(status=s, then=Value(n)) for n, s in enumerate(Agent.Status.values)),
    output_field=IntegerField(),
)


# --- Errors ------------------------------------------------------------------------------
class ExceptionInputInvalid(Exception):
    """The request itself is wrong (400): `field` names what, `code` is stable for clients."""

    code = "invalid"
    field = "non_field_errors"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownExceptionType(ExceptionInputInvalid):
    code = "unknown_exception_type"
    field = "type"


class DelayUntilInvalid(ExceptionInputInvalid):
    code = "delay_until_invalid"
    field = "delay_until"


class NoteTooLong(ExceptionInputInvalid):
    code = "note_too_long"
    field = "note"


class ResolutionInvalid(ExceptionInputInvalid):
    code = "resolution_invalid"
    field = "resolution"


class ExceptionRefused(TransitionError):
    """The order or the case is not in a state that allows this (409)."""

    code = "exception_refused"


class OrderNotOpen(ExceptionRefused):
    code = "order_closed"


class ExceptionAlreadyOpen(ExceptionRefused):
    code = "exception_already_open"


class ExceptionNotOpen(ExceptionRefused):
    code = "exception_not_open"


class MayNotHandleException(RoleMayNotTransition):
    """The actor's role may not raise or resolve this exception (403)."""

    code = "role_forbidden"


class ExceptionNotFound(Exception):
    code = "not_found"


# --- Raising -------------------------------------------------------------------------------
@transaction.atomic
def exception_raise(
    *,
    order_id: int,
    type_code: str,
    actor: Actor,
    note: str = "",
    delay_until: datetime | None = None,
    now: datetime | None = None,
) -> ExceptionCase:
    """Raise an exception of type `type_code` on an order and route it (see the module)."""
    now = now or timezone.now()
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise NoteTooLong(
            _("The note is %(n)d characters; at most %(max)d.") % {"n": len(note), "max": NOTE_MAX}
        )
    exc_type = _active_type(type_code)
    if exc_type.route == Route.RESCHEDULE:
        if delay_until is None:
            raise DelayUntilInvalid(
                _("“%(type)s” moves the due time: send delay_until, when the customer wants it.")
                % {"type": exc_type.name}
            )
        if delay_until <= now:
            raise DelayUntilInvalid(
                _("delay_until (%(when)s) is not in the future.") % {"when": _local(delay_until)}
            )
    elif delay_until is not None:
        raise DelayUntilInvalid(
            _("Only a reschedule type takes delay_until; “%(type)s” holds the order until it is resolved.")
            % {"type": exc_type.name}
        )

    order = services.lock_order(order_id)
    _check_may_raise(order=order, actor=actor, exc_type=exc_type)
    if order.stage in TERMINAL_STAGES:
        raise OrderNotOpen(
            _("Order %(tag)s is %(stage)s; exceptions are raised on open orders only.")
            % {"tag": order.tag, "stage": order.stage}
        )
    open_case = ExceptionCase.objects.select_related("type").filter(order=order, status=OPEN).first()
    if open_case is not None:
        raise ExceptionAlreadyOpen(
            _(
                "Order %(tag)s already has an open exception (“%(type)s”, raised by %(who)s); "
                "resolve it first."
            )
            % {"tag": order.tag, "type": open_case.type.name, "who": open_case.raised_by_name}
        )
    if exc_type.route == Route.RESCHEDULE:
        return _reschedule(order=order, exc_type=exc_type, actor=actor, note=note, until=delay_until, now=now)
    if order.stage == Stage.QUARANTINED:
        raise ExceptionRefused(
            _("Order %(tag)s is held by risk control; raise the exception after its review releases it.")
            % {"tag": order.tag}
        )

    # The case first: the transition's hook then finds it open and does not open a default one.
    case = _open_case(order=order, exc_type=exc_type, actor=actor, note=note, held_stage=order.stage, now=now)
    order = services.order_transition(
        order_id=order.pk, to=Stage.EXCEPTION, actor=actor, reason=_reason(exc_type, note)
    )
    _tell_raised(case=case, order=order)
    return case


def _active_type(code: str) -> ExceptionType:
    exc_type = ExceptionType.objects.select_related("team").filter(code=code, is_active=True).first()
    if exc_type is None:
        codes = ", ".join(ExceptionType.objects.filter(is_active=True).values_list("code", flat=True))
        raise UnknownExceptionType(
            _("“%(code)s” is not an active exception type. Choose one of: %(codes)s.")
            % {"code": code, "codes": codes or _("none configured")}
        )
    return exc_type


# Who may raise or resolve is read from the state machine's role table (orders.states).
_INTO_EXCEPTION = [s for s, targets in TRANSITIONS.items() if Stage.EXCEPTION in targets]


def _acts_as_agent_only(roles: frozenset[Role]) -> bool:
    return Role.AGENT in roles and not roles & _BACK_OFFICE


def _may_enter_exception(roles: frozenset[Role]) -> bool:
    return any(role_may(roles=roles, current=s, target=Stage.EXCEPTION) for s in _INTO_EXCEPTION)


def _may_leave_exception(roles: frozenset[Role]) -> bool:
    return any(role_may(roles=roles, current=Stage.EXCEPTION, target=s) for s in TRANSITIONS[Stage.EXCEPTION])


def _role_names(roles: frozenset[Role]) -> str:
    return ", ".join(sorted(roles)) or _("no role")


def _check_may_raise(*, order: Order, actor: Actor, exc_type: ExceptionType) -> None:
    """Who may raise comes from the state machine's role table (the stage move itself is
    checked again by `order_transition`); agents only on orders they own."""
    roles = actor.roles
    if exc_type.route == Route.RESCHEDULE:
        allowed = bool(roles & _RESCHEDULE_ROLES)
    else:
        allowed = _may_enter_exception(roles)
    if not allowed:
        raise MayNotHandleException(
            _("Your role (%(roles)s) may not raise “%(type)s” exceptions.")
            % {"roles": _role_names(roles), "type": exc_type.name}
        )
    if _acts_as_agent_only(roles) and order.owner_id != actor.user_id:
        raise MayNotHandleException(_("Agents raise exceptions only on orders they own."))


def _reason(exc_type: ExceptionType, note: str) -> str:
    return f"{exc_type.name}: {note}" if note else exc_type.name


def _pick_owner(team_id: int | None) -> Agent | None:
    """An agent of the team: online first, then whoever has the fewest open cases (one
    query); any agent of the team rather than none; None when the team has nobody (or the
    type no team), and the lane shows the case unowned."""
    if team_id is None:
        return None
    return (
        Agent.objects.filter(teams=team_id)
        .select_related("user")
        .annotate(open_cases=Count("exception_cases", filter=Q(exception_cases__status=OPEN)))
        .annotate(status_rank=_STATUS_RANK)
        .order_by("status_rank", "open_cases", "pk")
        .first()
    )


def _open_case(
    *, order: Order, exc_type: ExceptionType, actor: Actor, note: str, held_stage: str, now: datetime
) -> ExceptionCase:
    owner = _pick_owner(exc_type.team_id)
    case = ExceptionCase.objects.create(
        order=order,
        type=exc_type,
        status=OPEN,
        held_stage=held_stage,
        team_id=exc_type.team_id,
        owner=owner,
        note=note,
        raised_by_id=actor.user_id,
        raised_by_name=actor.name[:150],
        raised_at=now,
    )
    if owner is not None:
        owner_id = owner.pk
        transaction.on_commit(lambda: _push_agents([owner_id]))
    return case


def _tell_raised(*, case: ExceptionCase, order: Order) -> None:
    """The owner gets an in-app task; the type's e-mail and WeCom targets (procurement for
    stock) are told; an unowned case goes to its team's WeCom robot so it is never silent."""
    exc_type = case.type
    payload = {"order": order_context(order), "type": exc_type.name, "note": case.note}
    key = f"exception:{case.pk}:raised"
    common = {"template": "exception_raised", "payload": payload, "order_id": order.pk}
    messages = []
    if case.owner is not None:
        messages.append(Message(channel="in_app", user=case.owner.user, dedupe_key=f"{key}:owner", **common))
    for address in _addresses(exc_type.notify_emails):
        messages.append(
            Message(channel="email", target=address, dedupe_key=f"{key}:email:{address}", **common)
        )
    robots = {exc_type.notify_wecom_url} - {""}
    if case.owner is None and exc_type.team is not None and exc_type.team.wecom_webhook_url:
        robots.add(exc_type.team.wecom_webhook_url)
    for url in sorted(robots):
        messages.append(Message(channel="wecom", target=url, dedupe_key=f"{key}:wecom:{url}", **common))
    notify(messages)


def _addresses(value: str) -> list[str]:
    return sorted({a.strip() for a in (value or "").replace(";", ",").split(",") if a.strip()})


def _reschedule(
    *, order: Order, exc_type: ExceptionType, actor: Actor, note: str, until: datetime, now: datetime
) -> ExceptionCase:
    """The customer asked to delay: note it, move the due time, tell them; nothing is held."""
    when = _local(until)
    with translation.override(settings.LANGUAGE_CODE):  # the note is stored: the site's language
        line = _("[Delayed to %(when)s] %(note)s") % {"when": when, "note": note}
        resolution = _("Rescheduled to %(when)s") % {"when": when}
    line = line.strip()
    old = {"note": order.note, "due_at": order.due_at, "sla_level": order.sla_level}
    order.note = f"{order.note.rstrip()}\n{line}" if order.note.strip() else line
    order.due_at = until
    # A new deadline: the overdue ladder starts again from it.
    order.sla_level = 0
    order.sla_level_at = None
    order.save(update_fields=["note", "due_at", "sla_level", "sla_level_at", "updated_at"])
    changes = {
        "note": [old["note"], order.note],
        "due_at": [old["due_at"].isoformat() if old["due_at"] else None, until.isoformat()],
    }
    if old["sla_level"]:
        changes["sla_level"] = [old["sla_level"], 0]
    services._event(
        order, actor, OrderEvent.Kind.EDIT, at=now, reason=_reason(exc_type, note), changes=changes
    ).save()
    case = ExceptionCase.objects.create(
        order=order,
        type=exc_type,
        status=RESOLVED,
        held_stage=order.stage,
        team_id=exc_type.team_id,
        note=note,
        delay_until=until,
        raised_by_id=actor.user_id,
        raised_by_name=actor.name[:150],
        raised_at=now,
        resolved_by_id=actor.user_id,
        resolved_by_name=actor.name[:150],
        resolved_at=now,
        resolution=resolution,
    )
    _tell_customer(case=case, order=order, resolution=resolution)
    _tell_raised(case=case, order=order)
    services._after_commit_push([order.pk])
    return case


# --- Resolving ----------------------------------------------------------------------------
@transaction.atomic
def exception_resolve(
    *, case_id: int, actor: Actor, resolution: str, now: datetime | None = None
) -> ExceptionCase:
    """Resolve an open case: the order returns to the stage it was held in and the customer
    gets the type's SMS. If the order left the exception stage meanwhile (cancelled by a
    supervisor, say), the case is only closed: there is nothing to return and nobody to tell."""
    now = now or timezone.now()
    resolution = (resolution or "").strip()
    if not resolution:
        raise ResolutionInvalid(_("Say how the exception was resolved; the customer is told this."))
    if len(resolution) > RESOLUTION_MAX:
        raise ResolutionInvalid(
            _("The resolution is %(n)d characters; at most %(max)d (it goes to the customer by SMS).")
            % {"n": len(resolution), "max": RESOLUTION_MAX}
        )
    order_id = ExceptionCase.objects.filter(pk=case_id).values_list("order_id", flat=True).first()
    if order_id is None:
        raise ExceptionNotFound(_("Exception %(id)s does not exist.") % {"id": case_id})
    order = services.lock_order(order_id)  # the order first, then the case: as every writer does
    case = (
        ExceptionCase.objects.select_for_update(of=("self",)).select_related("type", "owner").get(pk=case_id)
    )
    if case.status != OPEN:
        raise ExceptionNotOpen(
            _("This exception was already resolved by %(who)s: %(resolution)s")
            % {"who": case.resolved_by_name or "-", "resolution": case.resolution}
        )
    _check_may_resolve(case=case, order=order, actor=actor)
    # Closed before the move, so that the transition's hook finds no open case to close.
    _close(case=case, actor=actor, resolution=resolution, now=now)
    if order.stage != Stage.EXCEPTION:
        return case
    back_to = order.held_stage or case.held_stage
    order = services.order_transition(order_id=order.pk, to=back_to, actor=actor, reason=resolution)
    _tell_customer(case=case, order=order, resolution=resolution)
    return case


def _check_may_resolve(*, case: ExceptionCase, order: Order, actor: Actor) -> None:
    roles = actor.roles
    if not _may_leave_exception(roles):
        raise MayNotHandleException(
            _("Your role (%(roles)s) may not resolve exceptions.") % {"roles": _role_names(roles)}
        )
    if _acts_as_agent_only(roles):
        owns_case = case.owner is not None and case.owner.user_id == actor.user_id
        if not owns_case and order.owner_id != actor.user_id:
            raise MayNotHandleException(
                _("Agents resolve only the exceptions they own or on their own orders.")
            )


def _close(*, case: ExceptionCase, actor: Actor, resolution: str, now: datetime) -> None:
    case.status = RESOLVED
    case.resolution = resolution
    case.resolved_by_id = actor.user_id
    case.resolved_by_name = actor.name[:150]
    case.resolved_at = now
    case.save(update_fields=["status", "resolution", "resolved_by", "resolved_by_name", "resolved_at"])
    if case.owner_id is not None:
        owner_id = case.owner_id
        transaction.on_commit(lambda: _push_agents([owner_id]))


def _tell_customer(*, case: ExceptionCase, order: Order, resolution: str) -> None:
    """The type's customer template by SMS to the order's phone; none configured, or no
    valid phone, and nothing is sent (notify skips an empty target)."""
    template = case.type.customer_template
    if not template or not order.customer_phone:
        return
    payload = {
        "order": order_context(order),
        "customer": order.customer_name,
        "type": case.type.name,
        "resolution": resolution,
        "delay_until": _local(case.delay_until) if case.delay_until else "",
    }
    notify(
        [
            Message(
                template=template,
                channel="sms",
                target=order.customer_phone,
                payload=payload,
                order_id=order.pk,
                dedupe_key=f"exception:{case.pk}:customer",
            )
        ]
    )


# --- Plain stage moves ---------------------------------------------------------------------
def exception_follow_transition(
    *, order: Order, current: Stage, target: Stage, actor: Actor, reason: str, now: datetime
) -> None:
    """Called by `order_transition` inside its transaction. A plain move into `exception`
    (a board drag) opens a case of the default type (`_default_type`), so the lane always says
    why and who; a plain move out of it resolves the open case with the move's reason and tells
    the customer. Moves made by `exception_raise` / `exception_resolve` find their case
    already opened or closed and pass through."""
    if target == Stage.EXCEPTION:
        if ExceptionCase.objects.filter(order=order, status=OPEN).exists():
            return
        exc_type = _default_type()
        if exc_type is None:
            logger.warning(
                "order %s moved to exception but no active hold type exists: no case opened", order.pk
            )
            return
        case = _open_case(
            order=order, exc_type=exc_type, actor=actor, note=reason.strip(), held_stage=current, now=now
        )
        _tell_raised(case=case, order=order)
    elif current == Stage.EXCEPTION:
        case = (
            ExceptionCase.objects.select_for_update(of=("self",))
            .select_related("type")
            .filter(order=order, status=OPEN)
            .first()
        )
        if case is None:
            return
        resolution = reason.strip()
        if not resolution:
            with translation.override(settings.LANGUAGE_CODE):  # stored, and sent to the customer
                resolution = (
                    _("Order cancelled")
                    if target == Stage.CANCELLED
                    else _("Order resumed (%(stage)s)") % {"stage": _stage_label(target)}
                )
        _close(case=case, actor=actor, resolution=resolution[:RESOLUTION_MAX], now=now)
        _tell_customer(case=case, order=order, resolution=case.resolution)


# --- Helpers -------------------------------------------------------------------------------
def _default_type() -> ExceptionType | None:
    """The type of a case opened by a plain move: settings.EXCEPTION_DEFAULT_TYPE (code `other`
    unless set) when an admin created it, else the first active `hold` type by code."""
    default = getattr(settings, "EXCEPTION_DEFAULT_TYPE", "other")
    return (
        ExceptionType.objects.select_related("team")
        .filter(Q(code=default) | Q(route=Route.HOLD), is_active=True)
        .annotate(
            preferred=Case(When(code=default, then=Value(0)), default=Value(1), output_field=IntegerField())
        )
        .order_by("preferred", "code")
        .first()
    )


def _local(when: datetime) -> str:
    return formats.date_format(timezone.localtime(when), "Y-m-d H:i")


def _stage_label(stage: Stage) -> str:
    from orders.models import STAGE_LABELS

    return str(STAGE_LABELS[stage])


def _push_agents(agent_ids: list[int]) -> None:
    from dashboards.events import publish_agent_changed

    publish_agent_changed(agent_ids)
