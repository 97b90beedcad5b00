"""Reads for the supervisors' live board: who may open it and which groups they hear, the
columns' cards in keyset pages, counts, cards by id, one order's timeline, and alerts.

Every order read starts from orders.selectors.order_visible_to, so the board never shows a
supervisor another region's orders, whatever the filters or ids asked for."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    F,
    FilteredRelation,
    Func,
    OuterRef,
    Q,
    QuerySet,
    When,
    Window,
)
from django.db.models.functions import RowNumber
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from dashboards.groups import board_groups
from dashboards.models import Alert
from orders.actors import roles_of
from orders.models import STAGE_LABELS, Channel, ExceptionCase, Order, OrderEvent
from orders.selectors import _SEE_ALL, order_visible_to, order_with_timeline
from orders.states import Role, Stage

# Who opens the board: supervisors and admins, and the back-office roles who move orders
# (customer service, warehouse, risk reviewers) — the server decides which moves each makes.
BOARD_ROLES = frozenset(
    {Role.ADMIN, Role.SUPERVISOR, Role.CUSTOMER_SERVICE, Role.WAREHOUSE, Role.RISK_REVIEWER}
)
# Red-flag alerts are for the people who answer for a region.
ALERT_ROLES = frozenset({Role.ADMIN, Role.SUPERVISOR})

COLUMNS = (Stage.PENDING_REVIEW, Stage.PICKING, Stage.SHIPPING, Stage.DONE)
LANES = (Stage.EXCEPTION, Stage.QUARANTINED)
ON_BOARD = COLUMNS + LANES
PAGE_SIZE = 50
MAX_PAGE = 500  # a reconnecting board re-reads a column as deep as it had scrolled, up to this
MAX_IDS = 500  # cards by id: one push's worth (dashboards.events.MAX_IDS_PER_MESSAGE)
# The done column shows the last day's work; older done orders are history, not the board.
DONE_WINDOW = timedelta(hours=24)
# A card that sits in one stage longer than this is red, due or not (seed 001).
STUCK_AFTER = timedelta(hours=2)


# --- Who ----------------------------------------------------------------------------------
def may_use_board(user) -> bool:
    if user is None or not user.is_authenticated:
        return False
    return bool(roles_of(user) & BOARD_ROLES) or user.has_perm("orders.view_order")


def may_see_alerts(user) -> bool:
    return user is not None and user.is_authenticated and bool(roles_of(user) & ALERT_ROLES)


@dataclass(frozen=True)
class BoardScope:
    """What one viewer's board covers: every order, or their regions' (and the orders no
    region covers). Mirrors order_visible_to, which stays the rule for every read."""

    sees_all: bool
    region_ids: tuple[int, ...] = ()

    @property
    def groups(self) -> list[str]:
        return board_groups(sees_all=self.sees_all, region_ids=self.region_ids)


def supervised_regions(user) -> list[dict]:
    """The regions `user` supervises ({id, code, name}), read once per request: the scope,
    the alert filter and the region menu all need them."""
    cached = getattr(user, "_paidan_supervised_regions", None)
    if cached is None:
        cached = list(user.supervised_regions.order_by("code").values("id", "code", "name"))
        user._paidan_supervised_regions = cached
    return cached


def board_scope(user) -> BoardScope:
    roles = roles_of(user)
    if roles & _SEE_ALL or user.has_perm("orders.view_order"):
        return BoardScope(sees_all=True)
    if Role.SUPERVISOR in roles:
        ids = tuple(sorted(r["id"] for r in supervised_regions(user)))
        return BoardScope(sees_all=not ids, region_ids=ids)
    return BoardScope(sees_all=False)


# --- Filters ------------------------------------------------------------------------------
class BoardInputError(ValueError):
    """Bad filters, cursor, stage or ids: `errors` maps each parameter to what was wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
FILTER_NAMES = ("channel", "region", "team", "agent", "flagged", "overdue", "q")


@dataclass(frozen=True)
class BoardFilters:
    channel: str = ""
    region: str = ""
    team: str = ""
    agent: str = ""  # the owner's username
    flagged: bool | None = None
    overdue: bool = False
    q: str = ""
    region_provinces: tuple[str, ...] = field(default=(), compare=False)

    def as_params(self) -> dict[str, str]:
        """The filters as the board's URL carries them (empty ones left out)."""
        params = {"channel": self.channel, "region": self.region, "team": self.team, "agent": self.agent}
        params = {k: v for k, v in params.items() if v}
        if self.flagged is not None:
            params["flagged"] = "1" if self.flagged else "0"
        if self.overdue:
            params["overdue"] = "1"
        if self.q:
            params["q"] = self.q
        return params


def parse_flag(params: Mapping[str, str], name: str, errors: dict[str, str]) -> bool | None:
    raw = (params.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    errors[name] = _("'%(value)s' is not a yes/no value: use 1 or 0.") % {"value": raw[:20]}
    return None


def parse_board_filters(params: Mapping[str, str]) -> BoardFilters:
    """The filters of a board URL or API call; BoardInputError names each bad one. A code
    that names nothing is an error, not an empty board: a typo should not look like calm."""
    from django.contrib.auth import get_user_model

    from agents.models import Region, Team

    errors: dict[str, str] = {}
    values = {name: (params.get(name) or "").strip() for name in ("channel", "region", "team", "agent", "q")}
    for name, value in values.items():
        if "\x00" in value:  # PostgreSQL cannot compare text that holds NUL
            errors[name] = _("%(name)s contains a NUL character.") % {"name": name}
            values[name] = ""
    if len(values["q"]) > 100:
        errors["q"] = _("Search for at most 100 characters.")
    if values["channel"] and not Channel.objects.filter(code=values["channel"]).exists():
        errors["channel"] = _("There is no channel with the code '%(code)s'.") % {
            "code": values["channel"][:40]
        }
    provinces: tuple[str, ...] = ()
    if values["region"]:
        region = Region.objects.filter(code=values["region"]).values_list("provinces", flat=True).first()
        if region is None:
            errors["region"] = _("There is no region with the code '%(code)s'.") % {
                "code": values["region"][:40]
            }
        else:
            provinces = tuple(str(p).strip() for p in region or [])
    if values["team"] and not Team.objects.filter(code=values["team"]).exists():
        errors["team"] = _("There is no team with the code '%(code)s'.") % {"code": values["team"][:40]}
    if values["agent"] and not get_user_model().objects.filter(username=values["agent"]).exists():
        errors["agent"] = _("There is no user named '%(name)s'.") % {"name": values["agent"][:40]}
    flagged = parse_flag(params, "flagged", errors)
    overdue = parse_flag(params, "overdue", errors)
    if errors:
        raise BoardInputError(errors)
    return BoardFilters(
        channel=values["channel"],
        region=values["region"],
        team=values["team"],
        agent=values["agent"],
        flagged=flagged,
        overdue=bool(overdue),
        q=values["q"],
        region_provinces=provinces,
    )


def parse_stage(raw: str | None) -> Stage:
    value = (raw or "").strip()
    if value not in {s.value for s in ON_BOARD}:
        choices = ", ".join(s.value for s in ON_BOARD)
        raise BoardInputError(
            {
                "stage": _("'%(value)s' is not a board column; use one of %(choices)s.")
                % {"value": value[:30], "choices": choices}
            }
        )
    return Stage(value)


def parse_ids(raw: str | None) -> list[int]:
    parts = [p.strip() for p in (raw or "").split(",") if p.strip()]
    if not parts:
        raise BoardInputError({"ids": _("Give the order ids, comma-separated, e.g. ids=12,15.")})
    if len(parts) > MAX_IDS:
        raise BoardInputError({"ids": _("At most %(max)d ids at a time.") % {"max": MAX_IDS}})
    if not all(p.isascii() and p.isdigit() and 0 < len(p) < 19 for p in parts):  # "²".isdigit()
        raise BoardInputError({"ids": _("Ids are whole numbers, comma-separated, e.g. ids=12,15.")})
    return list(dict.fromkeys(int(p) for p in parts))


def parse_limit(raw: str | None) -> int:
    if not raw:
        return PAGE_SIZE
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise BoardInputError({"limit": _("limit is a whole number from 1 to %(max)d.") % {"max": MAX_PAGE}})
    return int(raw)


# --- Keyset cursors -------------------------------------------------------------------------
# Open columns run from the most urgent due time (none last); done runs from the latest.
def _ordering(stage: Stage) -> list:
    if stage == Stage.DONE:
        return [F("stage_entered_at").desc(), F("id").desc()]
    return [F("due_at").asc(nulls_last=True), F("id").asc()]


def _python_order(stage: Stage):
    """_ordering as a sort key, for rows read without an ORDER BY."""
    if stage == Stage.DONE:
        return lambda r: (-r["stage_entered_at"].timestamp(), -r["id"])
    return lambda r: (r["due_at"] is None, r["due_at"].timestamp() if r["due_at"] else 0, r["id"])


def _cursor_for(stage: Stage, card: dict) -> str:
    at = card["stage_entered_at"] if stage == Stage.DONE else card["due_at"]
    raw = json.dumps([at, card["id"]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(stage: Stage, cursor: str) -> Q:
    bad = BoardInputError(
        {"cursor": _("This cursor was not given out by the board; start again without it.")}
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, last_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise bad from exc
    if not isinstance(last_id, int) or not (at_text is None or isinstance(at_text, str)):
        raise bad
    try:
        at = parse_datetime(at_text) if at_text else None
    except ValueError as exc:  # well formed but no such moment: month 13
        raise bad from exc
    if at_text and (at is None or at.tzinfo is None):
        raise bad
    if stage == Stage.DONE:
        if at is None:
            raise bad
        return Q(stage_entered_at__lt=at) | Q(stage_entered_at=at, id__lt=last_id)
    if at is None:
        return Q(due_at__isnull=True, id__gt=last_id)
    return Q(due_at__gt=at) | Q(due_at=at, id__gt=last_id) | Q(due_at__isnull=True)


# --- Cards ----------------------------------------------------------------------------------
def board_orders(user, filters: BoardFilters, *, now: datetime) -> QuerySet[Order]:
    """The orders on `user`'s board under `filters`: visible, in a board stage, done ones of
    the last day only."""
    qs = order_visible_to(user).filter(stage__in=[s.value for s in ON_BOARD])
    qs = qs.filter(~Q(stage=Stage.DONE) | Q(stage_entered_at__gte=now - DONE_WINDOW))
    if filters.channel:
        qs = qs.filter(channel__code=filters.channel)
    if filters.region:
        qs = qs.filter(province__in=filters.region_provinces)
    open_cases = ExceptionCase.objects.filter(order=OuterRef("pk"), status=ExceptionCase.Status.OPEN)
    if filters.team:
        from agents.models import Agent

        in_team = Agent.objects.filter(user_id=OuterRef("owner_id"), teams__code=filters.team)
        qs = qs.filter(Exists(in_team) | Exists(open_cases.filter(team__code=filters.team)))
    if filters.agent:
        qs = qs.filter(
            Q(owner__username=filters.agent) | Exists(open_cases.filter(owner__user__username=filters.agent))
        )
    if filters.flagged is not None:
        qs = qs.filter(is_flagged=filters.flagged)
    if filters.overdue:
        qs = qs.filter(Q(due_at__lt=now) | Q(stage_entered_at__lt=now - STUCK_AFTER)).exclude(
            stage=Stage.DONE
        )
    if filters.q:
        value = filters.q
        qs = qs.filter(
            Q(tag__icontains=value)
            | Q(external_id__icontains=value)
            | Q(customer_name__icontains=value)
            | Q(customer_phone__icontains=value)
            | Q(address__icontains=value)
        )
    return qs


_CARD_FIELDS = (
    "id", "tag", "stage", "held_stage", "channel__code", "channel__name", "customer_name", "is_vip",
    "amount", "currency", "owner__username", "owner__agent__display_name", "due_at", "stage_entered_at",
    "flags", "risk_score", "urgency", "province", "city", "sla_level",
)  # fmt: skip


def _with_exception(qs: QuerySet[Order]) -> QuerySet[Order]:
    """The open exception case's type, owner and team, read in the same query: a left join on
    the one open case an order can have (a unique constraint), not a subquery per row, whose
    estimated cost over thousands of rows would switch on PostgreSQL's JIT (a second)."""
    return qs.annotate(
        open_case=FilteredRelation("exceptions", condition=Q(exceptions__status=ExceptionCase.Status.OPEN)),
        exc_type=F("open_case__type__name"),
        exc_owner=F("open_case__owner__display_name"),
        exc_team=F("open_case__team__name"),
    )


def _card(row: dict, now: datetime) -> dict:
    due, entered = row["due_at"], row["stage_entered_at"]
    stage = row["stage"]
    late = stage != Stage.DONE and ((due is not None and due < now) or entered < now - STUCK_AFTER)
    exception = None
    if stage == Stage.EXCEPTION:
        exception = {"type": row["exc_type"], "owner": row["exc_owner"], "team": row["exc_team"]}
    return {
        "id": row["id"],
        "tag": row["tag"],
        "stage": stage,
        "held_stage": row["held_stage"],
        "channel": row["channel__code"],
        "channel_name": row["channel__name"],
        "customer": row["customer_name"],
        "vip": row["is_vip"],
        "amount": str(row["amount"]),
        "currency": row["currency"],
        "owner": row["owner__agent__display_name"] or row["owner__username"],
        "owner_username": row["owner__username"],
        "due_at": due.isoformat() if due else None,
        "stage_entered_at": entered.isoformat(),
        "flags": row["flags"] or [],
        "risk_score": row["risk_score"],
        "urgency": row["urgency"],
        "province": row["province"],
        "city": row["city"],
        "sla_level": row["sla_level"],
        "late": late,
        "exception": exception,
    }


def column_page(
    orders: QuerySet[Order], *, stage: Stage, cursor: str | None, limit: int, now: datetime
) -> tuple[list[dict], str | None]:
    """One keyset page of one column: (cards, cursor of the next page or None)."""
    qs = orders.filter(stage=stage)
    if cursor:
        qs = qs.filter(_after(stage, cursor))
    rows = list(
        _with_exception(qs)
        .order_by(*_ordering(stage))
        .values(*_CARD_FIELDS, "exc_type", "exc_owner", "exc_team")[: limit + 1]
    )
    cards = [_card(r, now) for r in rows[:limit]]
    return cards, (_cursor_for(stage, cards[-1]) if len(rows) > limit and cards else None)


class _PkInArray(Func):
    """`id = ANY(ARRAY(subquery))`: PostgreSQL runs the subquery once and fetches the few rows
    it names by primary key; `id IN (subquery)` is planned as a join over the whole table
    (measured with 5,000 open orders: 45 ms against 150 ms)."""

    output_field = BooleanField()

    def as_sql(self, compiler, connection, **extra):
        column, subquery = self.get_source_expressions()
        column_sql, column_params = compiler.compile(column)
        subquery_sql, subquery_params = compiler.compile(subquery)
        return f"{column_sql} = ANY({subquery_sql})", (*column_params, *subquery_params)


def first_pages(orders: QuerySet[Order], *, now: datetime, limit: int = PAGE_SIZE) -> dict[str, dict]:
    """The first page of every column and lane in one query (a window per stage), as
    {stage: {"cards": [...], "next": cursor or None}}."""
    is_done = Q(stage=Stage.DONE)
    rank = Window(
        RowNumber(),
        partition_by=[F("stage")],
        # Within one stage only one half applies: done sorts by latest entry, others by due.
        order_by=[
            Case(When(is_done, then=F("stage_entered_at"))).desc(nulls_last=True),
            F("due_at").asc(nulls_last=True),
            Case(When(is_done, then=F("id"))).desc(nulls_last=True),
            F("id").asc(),
        ],
    )
    # The window picks the ids (a narrow sort of the visible orders); the cards are then read
    # for those few rows only, so the joins never run over the whole board.
    ranked = orders.annotate(board_rank=rank).filter(board_rank__lte=limit + 1).values("pk")
    if connection.vendor == "postgresql":
        picked = Order.objects.filter(_PkInArray(F("pk"), ArraySubquery(ranked)))
    else:
        picked = Order.objects.filter(pk__in=ranked)
    rows = _with_exception(picked).values(*_CARD_FIELDS, "exc_type", "exc_owner", "exc_team")
    by_stage: dict[str, list[dict]] = {s.value: [] for s in ON_BOARD}
    for row in rows:
        by_stage[row["stage"]].append(row)
    for stage, found in by_stage.items():
        found.sort(key=_python_order(Stage(stage)))
    pages = {}
    for stage in ON_BOARD:
        found = by_stage[stage.value]
        cards = [_card(r, now) for r in found[:limit]]
        more = len(found) > limit and cards
        pages[stage.value] = {"cards": cards, "next": _cursor_for(stage, cards[-1]) if more else None}
    return pages


def board_counts(orders: QuerySet[Order]) -> dict[str, int]:
    """Cards per column and lane under the same filters: one GROUP BY."""
    counts = {s.value: 0 for s in ON_BOARD}
    for stage, n in orders.order_by().values("stage").annotate(n=Count("id")).values_list("stage", "n"):
        counts[stage] = n
    return counts


def cards_by_id(orders: QuerySet[Order], ids: Iterable[int], *, now: datetime) -> list[dict]:
    """The cards among `ids` that are on this board now; an id left out has left it (moved
    off the board, out of the filters, or out of sight) and its card should go."""
    rows = _with_exception(orders.filter(pk__in=list(ids))).values(
        *_CARD_FIELDS, "exc_type", "exc_owner", "exc_team"
    )
    return [_card(r, now) for r in rows]


# --- The drawer -------------------------------------------------------------------------------
def _stage_label(code: str) -> str:
    try:
        return str(STAGE_LABELS[Stage(code)])
    except ValueError:
        return code


def order_timeline(*, user, order_id: int, now: datetime) -> dict:
    """One order's details and its whole audit trail, labelled in the request's language.
    Order.DoesNotExist when it is absent or not visible to `user`."""
    from dashboards.templatetags.paidan import flag_label

    order = order_with_timeline(user=user, order_id=order_id)
    case = (
        ExceptionCase.objects.filter(order=order, status=ExceptionCase.Status.OPEN)
        .select_related("type", "owner", "team")
        .first()
    )
    kinds = dict(OrderEvent.Kind.choices)
    owner = None
    if order.owner_id:
        from agents.models import Agent

        owner = (
            Agent.objects.filter(user_id=order.owner_id).values_list("display_name", flat=True).first()
            or order.owner.get_username()
        )
    late = order.stage not in (Stage.DONE, Stage.CANCELLED) and (
        (order.due_at is not None and order.due_at < now) or order.stage_entered_at < now - STUCK_AFTER
    )
    return {
        "order": {
            "id": order.pk,
            "tag": order.tag,
            "external_id": order.external_id,
            "stage": order.stage,
            "stage_label": _stage_label(order.stage),
            "held_stage": order.held_stage,
            "channel": order.channel.code,
            "channel_name": order.channel.name,
            "customer": order.customer_name,
            "phone": order.customer_phone or order.customer_phone_raw,
            "phone_city": order.customer_phone_city,
            "vip": order.is_vip,
            "address": order.address,
            "province": order.province,
            "city": order.city,
            "district": order.district,
            "items": order.items,
            "amount": str(order.amount),
            "currency": order.currency,
            "note": order.note,
            "category": order.category,
            "urgency": order.urgency,
            "urgency_label": str(order.get_urgency_display()),
            "kind_label": str(order.get_kind_display()),
            "owner": owner,
            "due_at": order.due_at.isoformat() if order.due_at else None,
            "stage_entered_at": order.stage_entered_at.isoformat(),
            "received_at": order.received_at.isoformat(),
            "late": late,
            "flags": [{"code": f, "label": str(flag_label(f))} for f in order.flags or []],
            "risk_score": order.risk_score,
            "exception": {
                "type": case.type.name,
                "owner": case.owner.display_name if case.owner else None,
                "team": case.team.name if case.team else None,
                "note": case.note,
                "raised_at": case.raised_at.isoformat(),
                "raised_by": case.raised_by_name,
            }
            if case
            else None,
        },
        "events": [
            {
                "id": e.pk,
                "at": e.at.isoformat(),
                "kind": e.kind,
                "kind_label": str(kinds.get(e.kind, e.kind)),
                "actor": e.actor,
                "from_stage": e.from_stage,
                "from_label": _stage_label(e.from_stage) if e.from_stage else "",
                "to_stage": e.to_stage,
                "to_label": _stage_label(e.to_stage) if e.to_stage else "",
                "reason": e.reason,
            }
            for e in order.events.all()
        ],
    }


# --- Alerts -----------------------------------------------------------------------------------
def alerts_visible_to(user) -> QuerySet[Alert]:
    """Alerts `user` sees and may acknowledge: all for admins and supervisors of no particular
    region; for a regional supervisor their regions' alerts and those of no region."""
    roles = roles_of(user)
    if not roles & ALERT_ROLES:
        return Alert.objects.none()
    qs = Alert.objects.select_related("order", "region", "acknowledged_by")
    if Role.ADMIN in roles:
        return qs
    ids = [r["id"] for r in supervised_regions(user)]
    if not ids:
        return qs
    return qs.filter(Q(region_id__in=ids) | Q(region__isnull=True))


def alert_data(alert: Alert) -> dict:
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "kind_label": str(alert.get_kind_display()),
        "level": alert.level,
        "message": alert.message,
        "region": alert.region.name if alert.region_id else None,
        "order": {"id": alert.order_id, "tag": alert.order.tag} if alert.order_id else None,
        "created_at": alert.created_at.isoformat(),
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
    }
