"""Due times: the SLA arithmetic (across midnight, the 20:00 evening rule in Asia/Shanghai,
cold chain, expedited, the history factor), the policies in force and their cache, the
nightly adjustment by historical speed, and the SLA policy admin."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from orders.actors import system_actor
from orders.models import Order, OrderEvent, SlaPolicy
from orders.services import order_ingest, order_transition
from orders.sla import STAGE_ALLOWANCE, SlaBook, SlaRule, due_at_for
from orders.sla_policies import clear_sla_cache, sla_book, sla_history_adjust
from orders.states import Stage
from tests.factories import order_payload

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def book(*rules: SlaRule) -> SlaBook:
    return SlaBook(rules={(r.stage, r.category): r for r in rules}, tz=SHANGHAI)


REVIEW = SlaRule(
    stage="pending_review",
    category="",
    allowance_minutes=120,
    evening_after=time(20, 0),
    evening_extra_minutes=60,
)
COLD = SlaRule(
    stage="pending_review",
    category="fresh_food",
    allowance_minutes=30,
    evening_after=time(20, 0),
    evening_extra_minutes=60,
)


def due(entered: datetime, *, rules: SlaBook | None = None, category: str = "", expedited: bool = False):
    return due_at_for(
        stage="pending_review",
        entered_at=entered,
        expedited=expedited,
        category=category,
        policies=rules if rules is not None else book(REVIEW, COLD),
    )


# --- The arithmetic (no database) ----------------------------------------------------------
def test_the_evening_rule_starts_at_20_00_local_time():
    assert due(local(2026, 11, 20, 19, 59)) == local(2026, 11, 20, 21, 59)  # 120 min
    assert due(local(2026, 11, 20, 20, 0)) == local(2026, 11, 20, 23, 0)  # 120 + 60
    assert due(local(2026, 11, 20, 19, 59, 59)) == local(2026, 11, 20, 21, 59, 59)


def test_an_evening_order_is_due_after_midnight_the_next_day():
    assert due(local(2026, 11, 20, 23, 30)) == local(2026, 11, 21, 2, 30)
    assert due(local(2026, 11, 20, 23, 59)) == local(2026, 11, 21, 2, 59)
    # the last day of the month and of the year roll over too
    assert due(local(2026, 12, 31, 23, 30)) == local(2027, 1, 1, 2, 30)


def test_the_evening_rule_ends_at_midnight_small_hours_get_no_extra():
    assert due(local(2026, 11, 21, 0, 0)) == local(2026, 11, 21, 2, 0)
    assert due(local(2026, 11, 21, 1, 0)) == local(2026, 11, 21, 3, 0)
    assert due(local(2026, 11, 21, 7, 30)) == local(2026, 11, 21, 9, 30)


def test_the_evening_is_read_in_shanghai_time_whatever_the_utc_date():
    # 20:00 in Shanghai is 12:00 UTC: evening, though the UTC clock says noon
    entered = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert due(entered) == entered + timedelta(minutes=180)
    # 07:30 on the 21st in Shanghai is 23:30 on the 20th UTC: a UTC "evening", the wrong day
    entered = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert entered.astimezone(SHANGHAI) == local(2026, 11, 21, 7, 30)
    assert due(entered) == entered + timedelta(minutes=120)
    # 23:30 in Shanghai is 15:30 UTC on the same date; due 02:30 local, 18:30 UTC
    entered = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    assert due(entered).astimezone(SHANGHAI) == local(2026, 11, 21, 2, 30)


def test_cold_chain_is_faster_and_expedited_halves_the_allowance_not_the_evening_hour():
    morning = local(2026, 11, 20, 10, 0)
    assert due(morning, category="fresh_food") == local(2026, 11, 20, 10, 30)
    assert due(morning) == local(2026, 11, 20, 12, 0)
    assert due(morning, expedited=True) == local(2026, 11, 20, 11, 0)
    assert due(morning, category="fresh_food", expedited=True) == local(2026, 11, 20, 10, 15)
    # the evening hour is added whole, after the factors
    assert due(local(2026, 11, 20, 21, 0), category="fresh_food", expedited=True) == local(
        2026, 11, 20, 22, 15
    )


def test_the_history_factor_is_used_only_when_asked_and_held_to_its_bounds():
    entered = local(2026, 11, 20, 10, 0)

    def with_history(factor: float, *, adjust: bool = True) -> datetime:
        rule = SlaRule(
            stage="pending_review",
            category="",
            allowance_minutes=100,
            adjust_by_history=adjust,
            history_factor=factor,
            history_min_factor=0.8,
            history_max_factor=1.5,
        )
        return due(entered, rules=book(rule))

    assert with_history(1.2) == entered + timedelta(minutes=120)
    assert with_history(3.0) == entered + timedelta(minutes=150)  # held to the highest, 1.5
    assert with_history(0.1) == entered + timedelta(minutes=80)  # held to the lowest, 0.8
    assert with_history(3.0, adjust=False) == entered + timedelta(minutes=100)


def test_the_most_specific_policy_wins_then_any_category_then_the_defaults():
    entered = local(2026, 11, 20, 10, 0)
    rules = book(REVIEW, COLD)
    assert due(entered, rules=rules, category="fresh_food") == entered + timedelta(minutes=30)
    assert due(entered, rules=rules, category="  fresh_food ") == entered + timedelta(minutes=30)
    assert due(entered, rules=rules, category="apparel") == entered + timedelta(minutes=120)
    only_cold = book(COLD)
    default = STAGE_ALLOWANCE[Stage.PENDING_REVIEW]
    assert due(entered, rules=only_cold, category="apparel") == entered + default
    # no policies at all: the stage defaults, and nothing for final stages
    assert due_at_for(stage="picking", entered_at=entered, expedited=False) == entered + timedelta(hours=4)
    assert due_at_for(stage="picking", entered_at=entered, expedited=True) == entered + timedelta(hours=2)
    assert due_at_for(stage="done", entered_at=entered, expedited=False, policies=rules) is None
    assert due_at_for(stage="cancelled", entered_at=entered, expedited=False, policies=rules) is None


# --- The policies in force -----------------------------------------------------------------
@pytest.mark.django_db
def test_the_seeded_policies_make_cold_chain_faster_and_read_the_evening_in_the_site_zone(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    clear_sla_cache()
    policies = sla_book()
    assert policies.tz == SHANGHAI
    entered = local(2026, 11, 20, 20, 30)
    normal = due_at_for(stage="picking", entered_at=entered, expedited=False, policies=policies)
    cold = due_at_for(
        stage="picking", entered_at=entered, expedited=False, category="fresh_food", policies=policies
    )
    assert normal == entered + timedelta(minutes=240 + 60)
    assert cold == entered + timedelta(minutes=60 + 60)
    # shipping has no evening rule in the seed
    ship = due_at_for(stage="shipping", entered_at=entered, expedited=False, policies=policies)
    assert ship == entered + timedelta(hours=24)


@pytest.mark.django_db
def test_saving_a_policy_clears_the_cache_at_once_an_update_behind_its_back_waits_for_the_ttl():
    clear_sla_cache()
    entered = local(2026, 11, 20, 10, 0)

    def picking_due() -> datetime:
        return due_at_for(stage="picking", entered_at=entered, expedited=False, policies=sla_book())

    assert picking_due() == entered + timedelta(minutes=240)
    # a bulk update sends no signal: this process keeps the cached policies (that is the cache)
    SlaPolicy.objects.filter(stage="picking", category="").update(allowance_minutes=200)
    assert picking_due() == entered + timedelta(minutes=240)
    # saving through the model (admin, shell) clears it at once
    policy = SlaPolicy.objects.get(stage="picking", category="")
    policy.allowance_minutes = 180
    policy.save()
    assert picking_due() == entered + timedelta(minutes=180)
    # deleting too: no policy for picking left → the built-in default
    policy.delete()
    assert picking_due() == entered + STAGE_ALLOWANCE[Stage.PICKING]
    # an inactive policy does not count
    SlaPolicy.objects.create(stage="picking", category="", allowance_minutes=90, is_active=False)
    assert picking_due() == entered + STAGE_ALLOWANCE[Stage.PICKING]


@pytest.mark.django_db
def test_ingest_and_transitions_use_the_policies_and_a_stage_change_resets_the_ladder(jd):
    clear_sla_cache()
    with time_machine.travel(local(2026, 11, 20, 20, 15), tick=False):
        result = order_ingest(
            payload=order_payload(external_id="COLD-1", category="fresh_food"), actor=system_actor("test")
        )
        order = result.order
        # cold chain pending review: 30 min, plus the evening hour
        assert order.due_at == timezone.now() + timedelta(minutes=90)
        Order.objects.filter(pk=order.pk).update(sla_level=2, sla_level_at=timezone.now())
    with time_machine.travel(local(2026, 11, 21, 9, 0), tick=False):
        moved = order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
    stored = Order.objects.get(pk=order.pk)
    assert (stored.sla_level, stored.sla_level_at) == (0, None)
    assert stored.due_at == moved.due_at == local(2026, 11, 21, 10, 0)  # cold chain picking: 60 min


# --- Historical speed ----------------------------------------------------------------------
def _stays(
    jd, prefix: str, minutes: list[int], *, category: str, ended_days_ago: float = 3, urgency="normal"
):
    """Orders that entered picking and left it after each of `minutes`, some days ago."""
    events = []
    for i, stay in enumerate(minutes):
        order = order_ingest(
            payload=order_payload(external_id=f"{prefix}{i}", category=category, urgency=urgency),
            actor=system_actor("test"),
        ).order
        left = timezone.now() - timedelta(days=ended_days_ago) + timedelta(seconds=i)
        entered = left - timedelta(minutes=stay)
        for at, src, dst in (
            (entered - timedelta(minutes=5), "pending_review", "picking"),
            (left, "picking", "shipping"),
        ):
            events.append(
                OrderEvent(order=order, at=at, kind="transition", actor="test", from_stage=src, to_stage=dst)
            )
    OrderEvent.objects.bulk_create(events)


@pytest.mark.django_db
def test_nightly_history_sets_the_factor_from_the_p75_stay_clamped_with_enough_samples(jd):
    SlaPolicy.objects.filter(stage="picking", category="").update(
        allowance_minutes=240, history_factor=1.0, history_min_factor=0.8, history_max_factor=1.5
    )
    # 40 normal apparel orders stayed 15, 25, …, 405 minutes (+5 before: the entry counts)
    _stays(jd, "AP", [10 * k + 5 for k in range(1, 41)], category="apparel")
    # what must not count: cold chain (its own policy), expedited orders, stays ended 40 days ago
    _stays(jd, "FF", [5000] * 10, category="fresh_food")
    _stays(jd, "EX", [5000] * 5, category="apparel", urgency="expedited")
    _stays(jd, "OLD", [5000] * 5, category="apparel", ended_days_ago=40)

    results = {(a.stage, a.category): a for a in sla_history_adjust()}

    picking = results[("picking", "")]
    # p75 of 20..410 step 10 (linear interpolation at 29.25) = 312.5 minutes; / 240
    assert picking.samples == 40
    assert picking.p75_minutes == pytest.approx(312.5)
    policy = SlaPolicy.objects.get(stage="picking", category="")
    assert policy.history_factor == pytest.approx(312.5 / 240, abs=1e-4)
    assert policy.history_updated_at is not None
    # cold chain picking had 10 stays: fewer than 30, its factor is left as it was
    cold = results[("picking", "fresh_food")]
    assert (cold.samples, cold.factor) == (10, None)
    assert SlaPolicy.objects.get(stage="picking", category="fresh_food").history_updated_at is None
    # quarantine does not adjust by history (seed): not measured
    assert ("quarantined", "") not in results
    # and the new factor is in force for new due times at once
    entered = local(2026, 11, 20, 10, 0)
    assert due_at_for(stage="picking", entered_at=entered, expedited=False, policies=sla_book()) == (
        entered + timedelta(seconds=round(240 * round(312.5 / 240, 4) * 60))
    )


@pytest.mark.django_db
def test_a_slow_history_is_held_to_the_highest_factor(jd):
    SlaPolicy.objects.filter(stage="picking", category="fresh_food").update(
        allowance_minutes=60, history_max_factor=1.5
    )
    _stays(jd, "FF", [600] * 30, category="fresh_food")
    sla_history_adjust()
    assert SlaPolicy.objects.get(stage="picking", category="fresh_food").history_factor == 1.5


# --- Admin -----------------------------------------------------------------------------------
VALID = {
    "stage": "picking",
    "category": "frozen",
    "allowance_minutes": "45",
    "expedited_factor": "0.5",
    "evening_after": "20:00",
    "evening_extra_minutes": "60",
    "adjust_by_history": "on",
    "history_min_factor": "0.8",
    "history_max_factor": "1.5",
    "is_active": "on",
}


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user("root", "admin", is_superuser=True, is_staff=True))
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("history_min_factor", "1.2", "lowest factor must be more than 0 and at most 1; got 1.2"),
        ("history_min_factor", "0", "lowest factor must be more than 0"),
        ("history_max_factor", "0.9", "highest factor must be between 1 and 5.0; got 0.9"),
        ("history_max_factor", "7", "highest factor must be between 1 and 5.0; got 7"),
        ("expedited_factor", "0", "more than 0 and at most 1; got 0"),
        ("expedited_factor", "1.5", "more than 0 and at most 1; got 1.5"),
        ("allowance_minutes", "0", "between 1 and 43200 minutes; got 0"),
        ("evening_after", "00:00", "00:00 would make every order an evening order"),
        ("evening_extra_minutes", "1000", "at most 720 minutes; got 1000"),
        ("stage", "done", "not one of the available choices"),
    ],
)
def test_admin_refuses_bad_policies_naming_the_field_and_stores_nothing(admin_client, field, value, says):
    before = SlaPolicy.objects.count()
    response = admin_client.post("/admin/orders/slapolicy/add/", {**VALID, field: value})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field]
    assert says in " ".join(errors[field])
    assert SlaPolicy.objects.count() == before


@pytest.mark.django_db
def test_admin_refuses_a_second_policy_for_the_same_stage_and_category(admin_client):
    before = SlaPolicy.objects.count()
    response = admin_client.post(
        "/admin/orders/slapolicy/add/", {**VALID, "stage": "picking", "category": " fresh_food "}
    )
    assert response.status_code == 200
    assert "already exists" in str(response.context["adminform"].form.errors)
    assert SlaPolicy.objects.count() == before


@pytest.mark.django_db
def test_admin_adds_a_policy_lists_it_and_it_is_in_force_at_once(admin_client):
    entered = local(2026, 11, 20, 21, 0)
    sla_book()  # cached before the change
    response = admin_client.post("/admin/orders/slapolicy/add/", {**VALID, "category": " frozen "})
    assert response.status_code == 302, response.context["adminform"].form.errors
    policy = SlaPolicy.objects.get(stage="picking", category="frozen")
    assert (policy.allowance_minutes, policy.history_factor) == (45, 1.0)
    assert due_at_for(
        stage="picking", entered_at=entered, expedited=False, category="frozen", policies=sla_book()
    ) == entered + timedelta(minutes=45 + 60)
    page = admin_client.get("/admin/orders/slapolicy/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "frozen" in text and "from 20:00: +60 min" in text and "×1.00 (0.8–1.5)" in text
