"""Every write of risk control: screening at the door (inside the ingestion transaction),
holding and releasing orders, reviewers' decisions, blacklisting, and nightly learning."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from dashboards.alerts import alerts_raise
from dashboards.models import Alert
from dispatch import services as dispatch_services
from orders.actors import Actor, system_actor, user_actor
from orders.models import Order, OrderEvent
from orders.sla import due_at_for
from orders.sla_policies import sla_book
from orders.states import Role, Stage, TransitionError
from riskcontrol import engine
from riskcontrol import selectors as sel
from riskcontrol.engine import Decision, History, OrderSnap
from riskcontrol.explain import explain
from riskcontrol.models import (
    BLACKLISTABLE,
    BlacklistEntry,
    Review,
    ReviewDecision,
    Rule,
    RuleHit,
    RuleWeightChange,
)
from riskcontrol.params import clean_list_value

logger = logging.getLogger(__name__)

RISK = system_actor("risk")
FLAG_RISK = "risk"  # the score reached the flag threshold
FLAG_DELIVERY = "delivery_at_risk"  # the promised delivery time cannot be met there
# What the rules look at: a newer delivery changing one of these is screened again.
SCREENED_FIELDS = frozenset(
    {"address", "province", "city", "amount", "note", "coupon_code", "client_ip", "device_id",
     "card_fingerprint", "customer_phone", "customer_phone_city"}
)  # fmt: skip

# Learning: a Beta prior centred on the neutral precision, worth this many decided cases.
NEUTRAL_PRECISION = 0.5
PRIOR_STRENGTH = 10.0
LEARNING_DAYS = 90
LEARNING_STEP = 0.5  # how far towards its target a weight moves in one night


class ReviewError(TransitionError):
    code = "review_refused"


class ReviewNotFound(Exception):
    pass


class MayNotReview(Exception):
    code = "role_forbidden"


def screening_enabled() -> bool:
    return getattr(settings, "RISK_SCREENING", True)


# --- Screening at the door ---------------------------------------------------------------
@dataclass
class DoorScreening:
    """Screens a batch of new orders before they are inserted (so a held order is written
    held, never picked in between) and records what it found once they have ids."""

    orders: list[Order]
    now: datetime
    verdicts: dict[int, engine.Verdict] = field(default_factory=dict)  # by position in `orders`
    delivery: dict[int, str] = field(default_factory=dict)

    def before_insert(self) -> None:
        if not self.orders or not screening_enabled():
            return
        self._evaluate()
        for i, order in enumerate(self.orders):
            verdict = self.verdicts.get(i)
            order.risk_score = verdict.score if verdict is not None else 0
            order.flags = self._flags(i, order.flags)
            order.is_flagged = bool(order.flags)
            if verdict is not None and verdict.decision == Decision.QUARANTINE:
                order.stage = Stage.QUARANTINED
                order.due_at = due_at_for(
                    stage=Stage.QUARANTINED,
                    entered_at=self.now,
                    expedited=order.urgency == Order.Urgency.EXPEDITED,
                    category=order.category,
                    policies=sla_book(),
                )

    def _flags(self, i: int, flags: list[str]) -> list[str]:
        verdict = self.verdicts.get(i)
        out = set(flags) - {FLAG_RISK, FLAG_DELIVERY}
        if verdict is not None and verdict.decision != Decision.PASS:
            out.add(FLAG_RISK)
        if i in self.delivery:
            out.add(FLAG_DELIVERY)
        return sorted(out)

    def _evaluate(self) -> None:
        book = sel.RuleBook(now=self.now)
        restrictions = sel.delivery_restrictions(now=self.now)
        for i, order in enumerate(self.orders):
            limit = restrictions.get((order.province, order.city)) or restrictions.get((order.province, ""))
            if limit is not None:
                self.delivery[i] = limit.reason
        rules = book.all_rules
        if rules:
            snaps, history = self._context(rules)
            for i, order in enumerate(self.orders):
                thresholds = book.thresholds_for(order.channel_id)
                verdict = engine.evaluate(
                    snaps[i],
                    book.rules_for(order.channel_id),
                    history,
                    seq=i,
                    review_threshold=thresholds.review,
                    quarantine_threshold=thresholds.quarantine,
                )
                if verdict.hits:
                    self.verdicts[i] = verdict

    def _context(self, rules: list[engine.RuleSpec]) -> tuple[list[OrderSnap], History]:
        needs = engine.needs_of(rules)
        orders = self.orders
        ips = {str(o.client_ip) for o in orders if o.client_ip}
        devices = {o.device_id for o in orders if o.device_id}
        cards = {o.card_fingerprint for o in orders if o.card_fingerprint}
        context = sel.screening_context(
            needs,
            ips=ips,
            devices=devices,
            cards=cards,
            phones={o.customer_phone for o in orders if o.customer_phone},
            customer_ids={o.customer_id for o in orders if getattr(o, "_prior_orders", 0)},
            until=self.now,
            exclude_ids=frozenset(o.pk for o in orders if o.pk is not None),
        )
        history = History()
        for kind, key, at, _order_id in context.history:
            history.add(kind, key, at)
        customer_avg = context.customer_avg
        exact, fragments = context.blacklisted, context.fragments
        channel_avg = (
            {cid: sel.channel_usual_amount(cid) for cid in {o.channel_id for o in orders}}
            if needs.channel_avg
            else {}
        )
        warehouses = sel.warehouse_book() if needs.warehouse else None
        snaps = []
        at = self.now.timestamp()
        for i, o in enumerate(orders):
            customer = o.customer
            created = customer.account_created_at
            warehouse = warehouses.ship_from(o.province) if warehouses else None
            listed = []
            for kind, value in (
                ("ip", str(o.client_ip or "")),
                ("phone", o.customer_phone),
                ("device", o.device_id),
                ("card", o.card_fingerprint),
            ):
                if value and (kind, value) in exact:
                    listed.append((kind, value, exact[(kind, value)]))
            for fragment, reason in fragments:
                if fragment in o.address:
                    listed.append(("address", fragment, reason))
            snap = OrderSnap(
                key=i,
                at=at,
                amount=Decimal(o.amount),
                note=o.note or "",
                address=o.address or "",
                coupon=o.coupon_code or "",
                ip=str(o.client_ip or ""),
                device=o.device_id or "",
                card=o.card_fingerprint or "",
                phone=o.customer_phone or "",
                phone_city=o.customer_phone_city,
                phone_coords=sel.city_coords(o.customer_phone_city) if needs.phone_coords else None,
                delivery_city=o.city or o.province,
                delivery_coords=(float(o.latitude), float(o.longitude)) if o.latitude is not None else None,
                warehouse_name=warehouse.name if warehouse else "",
                warehouse_coords=(float(warehouse.latitude), float(warehouse.longitude))
                if warehouse
                else None,
                channel_id=o.channel_id,
                customer_prior_orders=getattr(o, "_prior_orders", 0),
                customer_avg_amount=customer_avg.get(o.customer_id),
                account_age_days=(self.now - created).total_seconds() / 86400 if created else None,
                channel_avg_amount=channel_avg.get(o.channel_id),
                blacklisted=tuple(listed),
            )
            snaps.append(snap)
            history.add_order(snap, seq=i)
        return snaps, history

    def after_insert(self, *, write_events: bool = True) -> list[OrderEvent]:
        """Hits, audit lines, and for held orders a review task and the regional alert. With
        `write_events=False` the audit lines are returned for the caller's own insert (ingest
        writes all of a batch's events in one statement)."""
        if not self.verdicts and not self.delivery:
            return []
        with translation.override(settings.LANGUAGE_CODE):
            hits, events = [], []
            for i, verdict in self.verdicts.items():
                order = self.orders[i]
                lines = []
                for hit in verdict.hits:
                    text = explain(hit.kind, hit.facts)[:300]
                    lines.append(text)
                    hits.append(
                        RuleHit(
                            order_id=order.pk, rule_id=hit.rule_id, at=self.now, kind=hit.kind,
                            weight=hit.weight, facts=hit.facts, explanation=text,
                        )
                    )  # fmt: skip
                events.append(
                    OrderEvent(
                        order_id=order.pk,
                        at=self.now,
                        kind=OrderEvent.Kind.RULE_HIT,
                        actor=RISK.name,
                        reason=_("Risk score %(score)s: %(hits)s")
                        % {"score": verdict.score, "hits": "; ".join(lines)},
                        changes={"score": verdict.score, "decision": verdict.decision.value},
                    )
                )
            for i, why in self.delivery.items():
                events.append(
                    OrderEvent(
                        order_id=self.orders[i].pk,
                        at=self.now,
                        kind=OrderEvent.Kind.RULE_HIT,
                        actor=RISK.name,
                        reason=_("Delivery time cannot be promised here: %(why)s") % {"why": why},
                        changes={"flag": FLAG_DELIVERY},
                    )
                )
            again = [o.pk for o in self.orders if getattr(o, "_rescreen", False)]
            if again:  # a newer delivery replaces what the older one triggered, unless decided
                RuleHit.objects.filter(order_id__in=again, outcome="").delete()
            RuleHit.objects.bulk_create(hits)
            if write_events:
                OrderEvent.objects.bulk_create(events)
            held = [
                (i, v)
                for i, v in self.verdicts.items()
                if v.decision == Decision.QUARANTINE and self.orders[i].stage == Stage.QUARANTINED
            ]
            held = [(self.orders[i], v) for i, v in held]
            if held:
                _open_reviews(
                    [
                        (order, v.score, "; ".join(explain(h.kind, h.facts) for h in v.hits[:3]))
                        for order, v in held
                    ],
                    now=self.now,
                )
        return [] if write_events else events


def rescreen_updated(*, orders: list[Order], now: datetime) -> None:
    """A newer delivery changed what the rules look at (a new address, amount, card…) on
    orders nobody has started: screen them again, inside the same ingestion transaction.
    A score now over the line holds the order, as if it had arrived that way."""
    orders = [o for o in orders if o.stage == Stage.PENDING_REVIEW]
    if not orders or not screening_enabled():
        return
    from orders.models import Customer
    from orders.services import order_transition

    customers = Customer.objects.in_bulk({o.customer_id for o in orders})
    counts = dict(
        Order.objects.filter(customer_id__in=customers)
        .values("customer_id")
        .annotate(n=Count("id"))
        .values_list("customer_id", "n")
    )
    for o in orders:
        o.customer = customers[o.customer_id]
        o._prior_orders = max(0, counts.get(o.customer_id, 1) - 1)
        o._rescreen = True
    screening = DoorScreening(orders=orders, now=now)
    screening._evaluate()
    for i, o in enumerate(orders):
        verdict = screening.verdicts.get(i)
        flags = screening._flags(i, o.flags)
        score = verdict.score if verdict is not None else 0
        if flags != o.flags or score != o.risk_score:
            o.flags, o.is_flagged, o.risk_score = flags, bool(flags), score
            Order.objects.filter(pk=o.pk).update(
                flags=flags, is_flagged=bool(flags), risk_score=score, updated_at=now
            )
    screening.after_insert()
    for i, o in enumerate(orders):
        verdict = screening.verdicts.get(i)
        if verdict is not None and verdict.decision == Decision.QUARANTINE:
            with translation.override(settings.LANGUAGE_CODE):
                why = "; ".join(explain(h.kind, h.facts) for h in verdict.hits[:3])
            order_transition(order_id=o.pk, to=Stage.QUARANTINED, actor=RISK, reason=why[:300])


def _tell_regional_managers(
    reviews: list[Review], items: list[tuple[Order, float, str]], *, regions: dict, now: datetime
) -> None:
    """In-app and SMS to the supervisors of each held order's region, and the region's WeCom
    robot: the manager hears of a hold at once, not when they next open the board."""
    from agents.models import Region
    from agents.selectors import phones_of, region_supervisors
    from dashboards.notify import Channel, Message, notify, order_context

    region_ids = {regions.get(order.province) for order, _s, _r in items}
    people = region_supervisors(region_ids)
    phones = phones_of({u.pk for users in people.values() for u in users})
    robots = dict(
        Region.objects.filter(pk__in=[r for r in region_ids if r]).exclude(wecom_webhook_url="")
        .values_list("pk", "wecom_webhook_url")
    )  # fmt: skip
    messages = []
    for review, (order, score, reason) in zip(reviews, items, strict=True):
        region_id = regions.get(order.province)
        payload = {"order": order_context(order), "score": round(score), "why": reason}
        key = f"risk_quarantine:{review.pk}"
        for user in people.get(region_id, []):
            messages.append(
                Message("risk_quarantine", Channel.IN_APP, payload, user=user, order_id=order.pk,
                        dedupe_key=f"{key}:in_app:{user.pk}")
            )  # fmt: skip
            if user.pk in phones:
                messages.append(
                    Message("risk_quarantine", Channel.SMS, payload, user=user, target=phones[user.pk],
                            order_id=order.pk, dedupe_key=f"{key}:sms:{user.pk}")
                )  # fmt: skip
        if region_id in robots:
            messages.append(
                Message("risk_quarantine", Channel.WECOM, payload, target=robots[region_id], order_id=order.pk,
                        dedupe_key=f"{key}:wecom")
            )  # fmt: skip
    notify(messages, now=now)


def _open_reviews(items: list[tuple[Order, float, str]], *, now: datetime) -> list[Review]:
    """A review, a review task in the dispatch pool and an alert for the regional manager
    per held order, written in bulk (a burst of bad orders holds hundreds at once)."""
    regions = sel.regions_by_province()
    reviews = Review.objects.bulk_create(
        [
            Review(order=order, score=score, reason=reason[:300], created_at=now)
            for order, score, reason in items
        ]
    )
    dispatch_services.review_pool_add(
        reviews=[
            (review, regions.get(order.province))
            for review, (order, _s, _r) in zip(reviews, items, strict=True)
        ],
        now=now,
    )
    alerts_raise(
        [
            Alert(
                kind=Alert.Kind.RISK_QUARANTINE,
                level=2,
                dedupe_key=f"risk_quarantine:{review.pk}",
                message=(
                    _("%(tag)s held by risk control (score %(score)s): %(why)s")
                    % {"tag": order.tag, "score": score, "why": reason}
                )[:300],
                order_id=order.pk,
                region_id=regions.get(order.province),
                created_at=now,
            )
            for review, (order, score, reason) in zip(reviews, items, strict=True)
        ]
    )
    _tell_regional_managers(reviews, items, regions=regions, now=now)
    return reviews


# --- Orders held and released by hand ----------------------------------------------------
def order_held(*, order: Order, actor: Actor, reason: str, now: datetime) -> None:
    """Someone moved an order to quarantine: its work stops and a review opens."""
    dispatch_services.dispatch_order_held(order=order, now=now, why=reason or _("held for a risk review"))
    if not Review.objects.filter(order=order, state__in=Review.OPEN_STATES).exists():
        why = reason or _("Held by %(who)s") % {"who": actor.name}
        _open_reviews([(order, order.risk_score, why)], now=now)


def order_left_quarantine(*, order: Order, actor: Actor, now: datetime) -> None:
    """An order left quarantine other than by a review decision (a supervisor moved it): its
    open review closes without a disposition, so it teaches the rules nothing."""
    for review in Review.objects.select_for_update().filter(order=order, state__in=Review.OPEN_STATES):
        review.state = Review.State.WITHDRAWN
        review.decided_at = now
        review.decided_by_id = actor.user_id
        review.save(update_fields=["state", "decided_at", "decided_by"])
        dispatch_services.review_pool_close(review=review, now=now, done=False)


# --- Review decisions ----------------------------------------------------------------------


def review_decide(
    *,
    review_id: int,
    user,
    decision: str,
    note: str = "",
    blacklist: list[str] | None = None,
    blacklist_days: int | None = None,
    now: datetime | None = None,
) -> Review:
    """A reviewer's decision. Confirmed fraud cancels the order (and may blacklist its IP,
    phone, device and card); a false positive releases it to pending review; needs
    investigation keeps it held. Rule hits learn the outcome; everything is audited."""
    now = now or timezone.now()
    actor = user_actor(user)
    if not actor.roles & sel.REVIEW_ROLES:
        raise MayNotReview(_("Only risk reviewers, supervisors and admins decide reviews."))
    blacklist = list(blacklist or [])
    with transaction.atomic():
        review = Review.objects.select_for_update().select_related("order").filter(pk=review_id).first()
        if review is None:
            raise ReviewNotFound(f"Review {review_id} does not exist.")
        if not review.is_open:
            raise ReviewError(
                _("This review is already closed (%(state)s).") % {"state": review.get_state_display()}
            )
        if decision != ReviewDecision.Decision.CONFIRMED and blacklist:
            raise ReviewError(_("Only confirmed fraud can be blacklisted."))
        order = Order.objects.select_for_update().get(pk=review.order_id)
        entries = _blacklist_values(order, blacklist)
        ReviewDecision.objects.create(
            review=review, decision=decision, note=note, blacklisted=[k for k, _v in entries], by=user, at=now
        )
        label = ReviewDecision.Decision(decision).label
        review.note = note
        if decision == ReviewDecision.Decision.INVESTIGATE:
            review.state = Review.State.INVESTIGATING
            review.save(update_fields=["state", "note"])
            _review_event(
                order, actor, now, _("Review: %(decision)s. %(note)s") % {"decision": label, "note": note}
            )
            return review
        final = (
            Review.State.CONFIRMED
            if decision == ReviewDecision.Decision.CONFIRMED
            else Review.State.FALSE_POSITIVE
        )
        review.state = final
        review.decided_at = now
        review.decided_by = user
        review.save(update_fields=["state", "note", "decided_at", "decided_by"])
        RuleHit.objects.filter(order=order).update(outcome=final.value)
        dispatch_services.review_pool_close(review=review, now=now, done=True)
        _review_event(
            order, actor, now, _("Review: %(decision)s. %(note)s") % {"decision": label, "note": note}
        )
        for kind, value in entries:
            blacklist_add(
                kind=kind,
                value=value,
                reason=_("Confirmed fraud on order %(tag)s") % {"tag": order.tag},
                user=user,
                order=order,
                days=blacklist_days,
                now=now,
            )
        from orders.services import order_transition

        target = Stage.CANCELLED if final == Review.State.CONFIRMED else Stage.PENDING_REVIEW
        reason = f"{label}: {note}" if note else str(label)
        order_transition(order_id=order.pk, to=target, actor=_as_reviewer(actor), reason=reason)
    return review


def _as_reviewer(actor: Actor) -> Actor:
    """A supervisor or admin deciding a review moves the order as the reviewer would."""
    return Actor(name=actor.name, user=actor.user, roles=actor.roles | {Role.RISK_REVIEWER})


def _blacklist_values(order: Order, kinds: list[str]) -> list[tuple[str, str]]:
    out = []
    for kind in dict.fromkeys(kinds):
        field_name = BLACKLISTABLE.get(kind)
        if field_name is None:
            raise ReviewError(
                _("'%(kind)s' cannot be blacklisted from a review; choose from: %(kinds)s.")
                % {"kind": kind, "kinds": ", ".join(BLACKLISTABLE)}
            )
        value = getattr(order, field_name)
        if not value:
            raise ReviewError(_("This order has no %(kind)s to blacklist.") % {"kind": kind})
        out.append((kind, str(value)))
    return out


def _review_event(order: Order, actor: Actor, now: datetime, text: str) -> None:
    OrderEvent(
        order=order, at=now, kind=OrderEvent.Kind.REVIEW, actor=actor.name[:100],
        actor_user_id=actor.user_id, reason=text.strip(),
    ).save()  # fmt: skip


def blacklist_add(
    *, kind: str, value: str, reason: str, user=None, order: Order | None = None, days: int | None = None,
    now: datetime | None = None,
) -> BlacklistEntry:  # fmt: skip
    """Add (or renew) a blacklist entry; audited on the order it came from."""
    now = now or timezone.now()
    value = clean_list_value(kind, value)
    expires = now + timedelta(days=days) if days else None
    entry, created = BlacklistEntry.objects.get_or_create(
        kind=kind,
        value=value,
        defaults={"reason": reason[:300], "expires_at": expires, "created_by": user, "source_order": order,
                  "created_at": now},
    )  # fmt: skip
    if not created:
        entry.reason = reason[:300]
        entry.expires_at = expires
        entry.save(update_fields=["reason", "expires_at"])
    if order is not None:
        actor = user_actor(user) if user is not None else RISK
        _review_event(order, actor, now, _("Blacklisted %(kind)s %(value)s") % {"kind": kind, "value": value})
    return entry


# --- Learning ------------------------------------------------------------------------------
@dataclass
class LearningReport:
    changed: list[RuleWeightChange] = field(default_factory=list)
    frozen: int = 0
    unchanged: int = 0


@transaction.atomic
def rules_learn(*, now: datetime | None = None) -> LearningReport:
    """Nightly: each rule's precision from reviewers' dispositions of its hits in the last
    90 days (with a Beta prior), and its weight moved towards base × precision / neutral,
    within the rule's bounds. Frozen rules keep their weight. Every change is recorded."""
    now = now or timezone.now()
    since = now - timedelta(days=LEARNING_DAYS)
    counts = {
        row["rule_id"]: row
        for row in RuleHit.objects.filter(at__gte=since)
        .exclude(outcome="")
        .values("rule_id")
        .annotate(
            confirmed=Count("id", filter=Q(outcome=RuleHit.Outcome.CONFIRMED)),
            false_positives=Count("id", filter=Q(outcome=RuleHit.Outcome.FALSE_POSITIVE)),
        )
    }
    report = LearningReport()
    with translation.override(settings.LANGUAGE_CODE):
        for rule in Rule.objects.select_for_update().order_by("pk"):
            if rule.weight_frozen:
                report.frozen += 1
                continue
            c = counts.get(rule.pk, {})
            confirmed, false_positives = c.get("confirmed", 0), c.get("false_positives", 0)
            precision = engine.posterior_precision(
                confirmed, false_positives, prior_precision=NEUTRAL_PRECISION, strength=PRIOR_STRENGTH
            )
            new = engine.learned_weight(
                base=rule.base_weight,
                precision=precision,
                neutral=NEUTRAL_PRECISION,
                low=rule.min_weight,
                high=rule.max_weight,
                current=rule.weight,
                step=LEARNING_STEP,
            )
            if abs(new - rule.weight) < 0.01:
                report.unchanged += 1
                continue
            change = RuleWeightChange.objects.create(
                rule=rule,
                at=now,
                source=RuleWeightChange.Source.LEARNING,
                old_weight=rule.weight,
                new_weight=new,
                confirmed=confirmed,
                false_positives=false_positives,
                precision=round(precision, 4),
                reason=(
                    _(
                        "Precision %(p).0f%% (%(c)d confirmed, %(f)d false positives in %(days)d days; "
                        "prior %(prior).0f%%)"
                    )
                    % {
                        "p": precision * 100,
                        "c": confirmed,
                        "f": false_positives,
                        "days": LEARNING_DAYS,
                        "prior": NEUTRAL_PRECISION * 100,
                    }
                )[:300],
            )
            rule.weight = new
            rule.save(update_fields=["weight", "updated_at"])
            report.changed.append(change)
    return report


def rule_weight_set(*, rule: Rule, old_weight: float, user, now: datetime | None = None) -> None:
    """An admin set the weight by hand: it becomes the base learning scales from."""
    if old_weight == rule.weight:
        return
    rule.base_weight = rule.weight
    Rule.objects.filter(pk=rule.pk).update(base_weight=rule.weight)
    RuleWeightChange.objects.create(
        rule=rule,
        at=now or timezone.now(),
        source=RuleWeightChange.Source.ADMIN,
        old_weight=old_weight,
        new_weight=rule.weight,
        reason=_("Set by hand"),
        by=user,
    )
