"""Dispatch end to end on PostgreSQL: orders enter the pool as they are ingested, the tick
offers them, agents answer, and everything that goes wrong escalates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent, PerformanceRecord
from dashboards.models import Alert
from dispatch import services
from dispatch.models import Assignment, DispatchPolicy, PoolEntry
from orders.actors import system_actor, user_actor
from orders.models import OrderEvent
from orders.services import order_ingest, order_transition
from tests.factories import AgentFactory, RegionFactory, SkillFactory, UserFactory, order_payload

pytestmark = pytest.mark.django_db

GUANGZHOU = (23.13, 113.26)
BEIJING = (39.90, 116.40)


def ingest(external_id: str, **overrides):
    result = order_ingest(
        payload=order_payload(external_id=external_id, **overrides), actor=system_actor("test")
    )
    assert result.status == "created", result.errors
    return result.order


def offers_of(order) -> list[Assignment]:
    return list(Assignment.objects.filter(order=order).order_by("id"))


def live(order) -> Assignment:
    return Assignment.objects.get(order=order, state__in=["offered", "accepted"])


@pytest.fixture
def aircon(db):
    return SkillFactory(code="aircon", name="空调安装", keywords=["空调", "移机"])


def test_an_ingested_order_waits_in_the_pool_until_the_tick_offers_it_with_reasons(jd, aircon):
    # given an air-conditioner order and two agents, one who knows air conditioners
    novice = AgentFactory()
    expert = AgentFactory(skills={"aircon": 5})
    order = ingest("A1", category="空调安装", note="客厅空调移机")
    entry = PoolEntry.objects.get(order=order)
    assert entry.state == "waiting" and entry.skills == ["aircon"] and entry.wait_reason == "queued"

    # when the pool is matched
    report = services.dispatch_tick()

    # then the expert gets the offer, with the score breakdown on the order's timeline
    assert report.offered == 1
    offer = live(order)
    assert offer.agent == expert and offer.agent != novice
    assert offer.state == "offered" and offer.skill_match
    assert offer.breakdown["skill"] > 0
    assert timedelta(minutes=9) < offer.expires_at - offer.offered_at <= timedelta(minutes=10)
    event = OrderEvent.objects.filter(order=order, kind="assignment").last()
    assert event.changes["breakdown"] == offer.breakdown and expert.display_name in event.reason
    entry.refresh_from_db()
    assert entry.state == "offered"


def test_accepting_makes_the_agent_the_owner_and_resets_their_exception_count(jd):
    agent = AgentFactory()
    Agent.objects.filter(pk=agent.pk).update(consecutive_exceptions=2)
    order = ingest("A2")
    services.dispatch_tick()

    services.assignment_accept(assignment_id=live(order).pk, agent=agent)

    order.refresh_from_db()
    agent.refresh_from_db()
    assert order.owner == agent.user
    assert live(order).state == "accepted"
    assert PoolEntry.objects.get(order=order).state == "assigned"
    assert agent.consecutive_exceptions == 0
    assert OrderEvent.objects.filter(order=order, kind="assignment", actor=agent.user.username).exists()


def test_a_rejected_order_goes_to_someone_else_and_never_back(jd):
    first, second = AgentFactory(), AgentFactory()
    order = ingest("A3")
    services.dispatch_tick()
    taker = live(order).agent

    services.assignment_reject(assignment_id=live(order).pk, agent=taker, reason="太远了")
    services.dispatch_tick()

    other = second if taker == first else first
    assert live(order).agent == other
    entry = PoolEntry.objects.get(order=order)
    assert entry.rounds == 1
    # and when the other one rejects too, nobody is left: no offer to the first again
    services.assignment_reject(assignment_id=live(order).pk, agent=other)
    services.dispatch_tick()
    assert not Assignment.objects.filter(order=order, state="offered").exists()
    assert [a.agent for a in offers_of(order)] == [taker, other]


def test_all_agents_rejecting_escalates_to_the_regional_supervisor_L2(jd, make_user):
    boss = make_user("boss", "supervisor")
    region = RegionFactory(code="south", provinces=["广东省"])
    region.supervisors.add(boss)
    agents = [AgentFactory(regions=[region]) for _ in range(3)]
    order = ingest("A4")
    for _ in agents:
        services.dispatch_tick()
        offer = live(order)
        services.assignment_reject(assignment_id=offer.pk, agent=offer.agent)

    entry = PoolEntry.objects.get(order=order)
    assert entry.state == "escalated" and entry.escalation_level == 2 and entry.rounds == 3
    alert = Alert.objects.get(kind="dispatch_l2", order=order)
    assert alert.region == region and order.tag in alert.message
    assert OrderEvent.objects.filter(order=order, changes__escalation_level=2).exists()
    # the escalated order is in the supervisor's manual queue, not matched automatically
    services.dispatch_tick()
    assert not Assignment.objects.filter(order=order, state="offered").exists()


def test_no_one_with_the_skill_waits_with_a_reason_and_goes_to_L2(jd, aircon):
    AgentFactory(skills={})  # online, free, but no air-conditioner skill
    order = ingest("A5", category="空调安装")

    services.dispatch_tick()

    entry = PoolEntry.objects.get(order=order)
    assert entry.wait_reason == "no_qualified_agent" and "aircon" in entry.wait_detail
    assert entry.state == "escalated"
    assert Alert.objects.filter(kind="dispatch_l2", order=order).count() == 1


def test_qualified_agents_all_busy_is_a_queue_not_an_escalation(jd):
    agent = AgentFactory(capacity=1)
    first, second = ingest("A6a"), ingest("A6b")
    services.dispatch_tick()
    waiting = second if Assignment.objects.get(agent=agent).order == first else first
    entry = PoolEntry.objects.get(order=waiting)
    assert entry.state == "waiting" and entry.wait_reason in {"all_at_capacity", "outranked"}

    services.dispatch_tick(now=timezone.now() + timedelta(minutes=9))  # past l2_wait, before expiry

    entry.refresh_from_db()
    assert entry.state == "waiting" and entry.wait_reason == "all_at_capacity"


def test_no_qualified_agent_online_escalates_after_the_policy_wait(jd):
    AgentFactory(status="offline")
    order = ingest("A6c")
    services.dispatch_tick()
    entry = PoolEntry.objects.get(order=order)
    assert entry.state == "waiting" and entry.wait_reason == "none_online"

    services.dispatch_tick(now=timezone.now() + timedelta(minutes=6))

    entry.refresh_from_db()
    assert entry.state == "escalated" and Alert.objects.filter(order=order, kind="dispatch_l2").count() == 1


def test_an_agent_going_offline_mid_offer_releases_it_for_someone_else(jd):
    leaving, staying = AgentFactory(), AgentFactory(status="break")
    order = ingest("A7")
    services.dispatch_tick()
    assert live(order).agent == leaving

    from agents.services import agent_set_status

    agent_set_status(agent=staying, status="online")
    agent_set_status(agent=leaving, status="offline")
    services.dispatch_tick()

    released = Assignment.objects.get(order=order, agent=leaving)
    assert released.state == "released"
    assert live(order).agent == staying
    leaving.refresh_from_db()
    assert leaving.consecutive_exceptions == 1


def test_an_expired_offer_is_never_offered_to_the_same_agent_again(jd):
    slow = AgentFactory()
    order = ingest("A8")
    services.dispatch_tick()
    offer = live(order)

    later = offer.expires_at + timedelta(seconds=1)
    report = services.dispatch_tick(now=later)

    offer.refresh_from_db()
    assert report.expired == 1 and offer.state == "expired"
    assert not Assignment.objects.filter(order=order, state="offered").exists()
    assert PoolEntry.objects.get(order=order).wait_reason == "no_qualified_agent"
    # a new agent comes: they get it, the slow one never again
    fresh = AgentFactory()
    PoolEntry.objects.filter(order=order).update(state="waiting")
    services.dispatch_tick(now=later)
    assert live(order).agent == fresh
    assert Assignment.objects.filter(order=order, agent=slow).count() == 1


def test_accepting_an_expired_offer_is_refused_and_returns_it_to_the_pool(jd):
    agent = AgentFactory()
    order = ingest("A9")
    services.dispatch_tick()
    offer = live(order)

    with pytest.raises(services.OfferNotOpen, match="expired"):
        services.assignment_accept(
            assignment_id=offer.pk, agent=agent, now=offer.expires_at + timedelta(seconds=1)
        )

    offer.refresh_from_db()
    assert offer.state == "expired"


def test_cross_region_orders_go_to_agents_covering_the_region_or_within_radius(jd, make_user):
    south = RegionFactory(code="south", provinces=["广东省"])
    north = RegionFactory(code="north", provinces=["北京市"])
    far = AgentFactory(regions=[north], latitude=BEIJING[0], longitude=BEIJING[1], service_radius_km=50)
    order = ingest("A10")  # 深圳, in the south region

    services.dispatch_tick()

    entry = PoolEntry.objects.get(order=order)
    assert entry.region == south
    assert entry.wait_reason == "no_qualified_agent" and not Assignment.objects.filter(agent=far).exists()
    # an agent of the north region who lives in 广州 and serves 200 km is close enough
    near = AgentFactory(regions=[north], latitude=GUANGZHOU[0], longitude=GUANGZHOU[1], service_radius_km=200)
    PoolEntry.objects.filter(order=order).update(state="waiting")
    services.dispatch_tick()
    assert live(order).agent == near


def test_a_backlog_at_the_head_of_the_pool_never_keeps_a_free_agent_elsewhere_idle(jd):
    # given four southern orders at the head of the pool (two of them urgent) whose one agent
    # has a single slot, and a northern order behind them whose agent is free
    south = RegionFactory(code="south", provinces=["广东省"])
    north = RegionFactory(code="north", provinces=["北京市"])
    southerner = AgentFactory(regions=[south], capacity=1)
    northerner = AgentFactory(
        regions=[north], latitude=BEIJING[0], longitude=BEIJING[1], service_radius_km=50
    )
    heads = [ingest(f"H{i}") for i in range(4)]  # 深圳
    PoolEntry.objects.filter(order__in=heads[:2]).update(urgent=True)
    behind = ingest("N1", address="北京市朝阳区建国路88号")

    # when one round takes pages of two
    report = services.dispatch_tick(limit=2)

    # then it reads on past the southern backlog while the northerner is free: the fifth order
    # in line is offered in the same round, and each page's orders got their own reasons
    assert live(behind).agent == northerner
    assert report.claimed == 5 and report.offered == 2
    # the southerner's one slot went to an urgent order of the first page
    assert Assignment.objects.get(agent=southerner).order in heads[:2]
    waiting = PoolEntry.objects.filter(order__in=heads, state="waiting")
    assert waiting.count() == 3 and {e.wait_reason for e in waiting} <= {"all_at_capacity", "outranked"}


def test_a_round_stops_paging_once_nobody_has_a_free_slot(jd):
    AgentFactory(capacity=1)
    orders = [ingest(f"P{i}") for i in range(5)]

    report = services.dispatch_tick(limit=2)

    # the first page filled the only slot: the rest of the pool is not read in this round
    assert report.claimed == 2 and report.offered == 1
    assert PoolEntry.objects.get(order=orders[4]).wait_reason == "queued"


def test_a_sweep_of_an_empty_pool_reads_no_policies(jd):
    with CaptureQueriesContext(connection) as queries:
        report = services.dispatch_tick()

    assert report.claimed == 0 and not report.busy
    assert not [q for q in queries.captured_queries if "dispatch_dispatchpolicy" in q["sql"]]


def test_a_returning_customer_gets_the_agent_who_served_them_last(jd):
    agents = [AgentFactory() for _ in range(4)]
    first = ingest("A11a")
    services.dispatch_tick()
    served_by = live(first).agent
    services.assignment_accept(assignment_id=live(first).pk, agent=served_by)
    # the others are idle, the last one has more work; the customer comes back
    again = ingest("A11b")

    services.dispatch_tick()

    assert live(again).agent == served_by
    assert live(again).breakdown["returning"] > 0
    assert len(agents) == 4


def test_a_vip_goes_to_their_dedicated_agent(jd):
    AgentFactory(), AgentFactory()
    personal = AgentFactory()
    order = ingest("A12", customer={"is_vip": True})
    personal.dedicated_customers.add(order.customer)

    PoolEntry.objects.filter(order=order).update(is_vip=True)
    services.dispatch_tick()

    assert live(order).agent == personal


def test_capacity_is_never_exceeded_and_every_order_is_offered_or_waits_with_a_reason(jd):
    agents = [AgentFactory(capacity=2) for _ in range(3)]
    orders = [ingest(f"B{i}") for i in range(10)]

    services.dispatch_tick()
    services.dispatch_tick()

    for agent in agents:
        assert Assignment.objects.filter(agent=agent, state__in=["offered", "accepted"]).count() == 2
    for order in orders:
        entry = PoolEntry.objects.get(order=order)
        assert entry.state == "offered" or (
            entry.state == "waiting" and entry.wait_reason == "all_at_capacity"
        )


def test_closing_an_order_completes_the_assignment_frees_the_slot_and_updates_the_profile(jd, make_user):
    agent = AgentFactory(capacity=1)
    first, second = ingest("C1"), ingest("C2")
    services.dispatch_tick()
    taken = first if Assignment.objects.filter(order=first).exists() else second
    other = second if taken == first else first
    services.assignment_accept(assignment_id=live(taken).pk, agent=agent)
    boss = user_actor(make_user("boss", "supervisor"))

    for stage in ("picking", "shipping", "done"):
        order_transition(order_id=taken.pk, to=stage, actor=boss)
    services.dispatch_tick()

    assert Assignment.objects.get(order=taken).state == "completed"
    assert PoolEntry.objects.get(order=taken).state == "closed"
    assert live(other).agent == agent
    agent.refresh_from_db()
    assert agent.profile_updated_at is not None and agent.acceptance_rate == 1.0


def test_three_consecutive_exceptions_raise_L3_with_email_and_a_performance_record(
    jd, make_user, django_capture_on_commit_callbacks
):
    boss = make_user("boss", "supervisor", email="boss@example.com")
    flaky = AgentFactory(supervisor=boss)
    orders = [ingest(f"D{i}") for i in range(3)]
    services.dispatch_tick()
    with django_capture_on_commit_callbacks(execute=True):
        for order in orders:
            services.assignment_reject(assignment_id=live(order).pk, agent=flaky)

    flaky.refresh_from_db()
    assert flaky.consecutive_exceptions == 3
    record = PerformanceRecord.objects.get(agent=flaky)
    assert record.count == 3
    assert Alert.objects.filter(kind="agent_l3", agent=flaky).count() == 1
    [email] = mail.outbox
    assert email.to == ["boss@example.com"] and flaky.display_name in email.subject


def test_a_supervisor_assigns_by_hand_respecting_capacity_unless_forced(jd, make_user):
    boss = user_actor(make_user("boss", "supervisor"))
    full = AgentFactory(capacity=1, status="offline")
    order_a, order_b = ingest("E1"), ingest("E2")

    services.order_assign(order_id=order_a.pk, agent_id=full.pk, actor=boss)
    with pytest.raises(services.CapacityExceeded, match="1 of 1"):
        services.order_assign(order_id=order_b.pk, agent_id=full.pk, actor=boss)
    services.order_assign(order_id=order_b.pk, agent_id=full.pk, actor=boss, force=True)

    order_a.refresh_from_db()
    assert order_a.owner == full.user
    assert Assignment.objects.filter(agent=full, state="accepted", manual=True).count() == 2
    # pulling an order back returns it to automatic matching
    services.order_assign(order_id=order_a.pk, agent_id=None, actor=boss)
    assert PoolEntry.objects.get(order=order_a).state == "waiting"
    assert Assignment.objects.get(order=order_a).state == "released"


def test_policies_are_chosen_by_the_most_specific_scope(jd, tb):
    general = DispatchPolicy.objects.create(name="general", kind="smart")
    for_jd = DispatchPolicy.objects.create(name="jd", kind="round_robin", channel=jd)
    for_jd_aircon = DispatchPolicy.objects.create(
        name="jd-aircon", kind="weighted", channel=jd, service_type="空调安装"
    )
    from dispatch.selectors import PolicyBook

    book = PolicyBook()
    assert book.for_entry(PoolEntry(channel=jd, category="空调安装")).row == for_jd_aircon
    assert book.for_entry(PoolEntry(channel=jd, category="apparel")).row == for_jd
    assert book.for_entry(PoolEntry(channel=tb, category="空调安装")).row == general


def test_round_robin_policy_spreads_offers_evenly(jd):
    DispatchPolicy.objects.create(name="rr", kind="round_robin")
    agents = [AgentFactory(capacity=10) for _ in range(3)]
    for i in range(9):
        ingest(f"F{i}")

    services.dispatch_tick()

    counts = sorted(Assignment.objects.filter(agent=a).count() for a in agents)
    assert counts == [3, 3, 3]
    assert Assignment.objects.first().policy_kind == "round_robin"


def test_inquiries_are_routed_by_intent_and_close_frees_the_agent(jd, aircon):
    from dispatch.models import Inquiry

    general = AgentFactory(capacity=1)
    expert = AgentFactory(capacity=1, skills={"aircon": 4})
    inquiry = services.inquiry_create(
        channel=jd, account_id="u1", customer_name="李", text="我家空调要移机，多少钱？", vip=False
    )

    services.dispatch_tick()
    offer = Assignment.objects.get(inquiry=inquiry)
    assert offer.agent == expert and inquiry.skills == ["aircon"]
    services.assignment_accept(assignment_id=offer.pk, agent=expert)
    services.inquiry_close(inquiry_id=inquiry.pk, actor=user_actor(expert.user), agent=expert)

    inquiry.refresh_from_db()
    assert inquiry.state == Inquiry.State.CLOSED
    assert Assignment.objects.get(pk=offer.pk).state == "completed"
    assert general.assignments.count() == 0


def test_inquiries_waiting_past_the_skill_threshold_raise_one_queue_alert(jd, aircon):
    aircon.wait_alert_seconds = 60
    aircon.save()
    services.inquiry_create(channel=jd, account_id="u2", customer_name="", text="空调不制冷", vip=False)
    services.inquiry_create(channel=jd, account_id="u3", customer_name="", text="空调漏水", vip=False)

    later = timezone.now() + timedelta(minutes=2)
    assert services.queue_wait_alerts(now=later) == 1
    assert services.queue_wait_alerts(now=later) == 0  # a second scanner: no second alert
    alert = Alert.objects.get(kind="queue_wait")
    assert "2" in alert.message and alert.skill == aircon


def test_a_user_factory_agent_has_the_agent_role():
    agent = AgentFactory()
    assert agent.user.groups.filter(name="agent").exists()
    assert UserFactory(username="plain").groups.count() == 0


def test_a_new_policy_filters_by_skill_and_area_like_the_built_in_default():
    policy = DispatchPolicy(name="new")
    assert policy.filters == ["skill", "area"]
    from dispatch.selectors import DEFAULT_POLICY, policy_spec

    assert policy_spec(policy).filters == policy_spec(DEFAULT_POLICY).filters == {"skill", "area"}


@pytest.mark.parametrize(
    ("criteria", "filters", "field", "message"),
    [
        ({"criterion": "skill"}, [], "criteria", "list of objects"),
        ([{"criterion": "luck"}], [], "criteria", "'luck' is not a criterion"),
        ([{"criterion": "skill"}, {"criterion": "skill"}], [], "criteria", "listed twice"),
        ([{"criterion": "load", "weight": -1}], [], "criteria", "from 0 to 1000"),
        ([{"criterion": "load", "weight": True}], [], "criteria", "from 0 to 1000"),
        ([{"criterion": "load", "bonus": 2}], [], "criteria", "unknown keys: bonus"),
        ([], ["skill", "mood"], "filters", "Unknown filters: mood"),
    ],
)
def test_the_admin_refuses_a_bad_policy_with_what_is_wrong(criteria, filters, field, message):
    from django.core.exceptions import ValidationError

    policy = DispatchPolicy(name="bad", criteria=criteria, filters=filters)
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()
    assert message in " ".join(refused.value.message_dict[field])
    assert not DispatchPolicy.objects.exists()


def test_the_admin_refuses_a_burst_window_that_narrows_and_an_unanswerable_offer():
    from django.core.exceptions import ValidationError

    policy = DispatchPolicy(name="bad", burst_min_seconds=900, burst_max_seconds=300, offer_seconds=10)
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()
    assert set(refused.value.message_dict) == {"burst_min_seconds", "offer_seconds"}


def test_a_reject_reason_over_300_characters_is_refused_and_the_offer_stays_open(jd):
    from tests.test_dispatch_api import client_for

    agent = AgentFactory()
    order = ingest("R1")
    services.dispatch_tick()
    response = client_for(agent.user).post(
        f"/api/assignments/{live(order).pk}/reject/", {"reason": "太远" * 151}, format="json"
    )
    assert response.status_code == 400 and "reason" in response.json()
    assert live(order).state == "offered"
