"""Exception routing through the services: each route does what its type says, the lane always
has a case with an owner, resolving returns the order and texts the customer, reschedules move
the due time, and every refusal says why and stores nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone, translation

from agents.models import Team
from dashboards.models import Notification
from orders import exceptions as exc
from orders.actors import Actor, system_actor, user_actor
from orders.models import ExceptionCase, ExceptionType, Order, OrderEvent
from orders.services import order_ingest, order_transition
from orders.states import RoleMayNotTransition, TransitionError
from tests.factories import AgentFactory, UserFactory, order_payload

pytestmark = pytest.mark.django_db


# --- Given ------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _english():
    # The refusals are read in English here, as API clients ask for them; stored texts (notes,
    # messages to customers) stay in the site's language whatever the caller's.
    with translation.override("en"):
        yield


@pytest.fixture
def teams(jd):
    """Customer service reconfirms addresses and handles holds; the warehouse team handles stock."""
    cs = Team.objects.create(code="cs", name="客服组", wecom_webhook_url="https://qyapi.example/cs-robot")
    stock = Team.objects.create(code="stock", name="仓库组")
    ExceptionType.objects.filter(code__in=["address_ambiguous", "damaged", "customer_delay", "other"]).update(
        team=cs
    )
    ExceptionType.objects.filter(code="out_of_stock").update(
        team=stock,
        notify_emails="buyer@example.com, lead-buyer@example.com",
        notify_wecom_url="https://qyapi.example/procurement-robot",
    )
    return {"cs": cs, "stock": stock}


def member(username: str, team: Team, *roles: str, status: str = "online"):
    agent = AgentFactory(
        user=UserFactory(username=username, roles=list(roles) or ["customer_service"]),
        display_name=username,
        status=status,
    )
    agent.teams.add(team)
    return agent


def person(username: str, *roles: str) -> Actor:
    return user_actor(UserFactory(username=username, roles=list(roles)))


def ingest(external_id: str = "EX-1", **overrides) -> Order:
    result = order_ingest(
        payload=order_payload(external_id=external_id, **overrides), actor=system_actor("test")
    )
    assert result.status == "created", result.errors
    assert result.order.stage == "pending_review"
    return Order.objects.get(pk=result.order.pk)


def in_picking(external_id: str = "EX-1") -> Order:
    order = ingest(external_id)
    return order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))


def stored() -> tuple:
    """Everything a refused request must leave as it was."""
    return (
        ExceptionCase.objects.count(),
        OrderEvent.objects.count(),
        Notification.objects.count(),
        sorted(Order.objects.values_list("pk", "stage", "held_stage", "due_at", "note")),
    )


# --- Routes -----------------------------------------------------------------------------------
def test_an_ambiguous_address_becomes_a_reconfirm_task_for_customer_service(teams):
    # given an order and two online customer-service agents, one already holding a case
    busy = member("cs_busy", teams["cs"])
    free = member("cs_free", teams["cs"])
    earlier = in_picking("EX-0")
    exc.exception_raise(order_id=earlier.pk, type_code="damaged", actor=system_actor("test"))
    assert ExceptionCase.objects.get(order=earlier).owner == busy  # same load: the first one
    order = ingest()
    # when customer service raises "address ambiguous" on it
    clerk = person("clerk", "customer_service")
    case = exc.exception_raise(
        order_id=order.pk, type_code="address_ambiguous", actor=clerk, note="门牌号缺失"
    )
    # then the order sits in the exception lane, held in its stage, with an open case
    order.refresh_from_db()
    assert (order.stage, order.held_stage) == ("exception", "pending_review")
    case.refresh_from_db()
    assert case.status == "open" and case.held_stage == "pending_review"
    assert case.team == teams["cs"] and case.raised_by_name == "clerk"
    # owned by the online agent of the team with the fewest open cases
    assert case.owner == free
    # who gets an in-app task naming the order and the problem
    task = Notification.objects.get(order=order, channel="in_app")
    assert task.user == free.user and task.template == "exception_raised"
    assert order.tag in task.body and "地址不明确" in task.body and "门牌号缺失" in task.body
    # and the stage move is audited once, with the type as its reason
    moves = OrderEvent.objects.filter(order=order, kind="transition")
    assert list(moves.values_list("from_stage", "to_stage", "reason", "actor")) == [
        ("pending_review", "exception", "地址不明确: 门牌号缺失", "clerk")
    ]


def test_out_of_stock_locks_the_order_and_tells_procurement(teams):
    keeper = member("wh_keeper", teams["stock"], "warehouse")
    order = in_picking()
    case = exc.exception_raise(
        order_id=order.pk, type_code="out_of_stock", actor=person("wh", "warehouse"), note="DJ-001 无货"
    )
    order.refresh_from_db()
    assert (order.stage, order.held_stage) == ("exception", "picking")
    assert case.owner == keeper
    sent = Notification.objects.filter(order=order, template="exception_raised")
    assert sorted(sent.values_list("channel", "target")) == [
        ("email", "buyer@example.com"),
        ("email", "lead-buyer@example.com"),
        ("in_app", ""),
        ("wecom", "https://qyapi.example/procurement-robot"),
    ]
    mail = sent.get(target="buyer@example.com")
    assert order.tag in mail.subject and "缺货" in mail.subject and "DJ-001 无货" in mail.body
    assert f"/orders/{order.pk}/" in mail.body
    # a locked order moves nowhere but back, or to cancelled
    with pytest.raises(TransitionError, match="returns the order to 'picking'"):
        order_transition(order_id=order.pk, to="shipping", actor=system_actor("test"))


def test_a_hold_goes_to_the_team_and_its_owner_is_told(teams):
    owner = member("cs_1", teams["cs"])
    order = in_picking()
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=person("sup", "supervisor"))
    assert case.owner == owner
    assert Notification.objects.get(order=order, template="exception_raised").user == owner.user


def test_the_owner_is_online_first_then_the_least_loaded_else_anyone_of_the_team(teams):
    offline = member("cs_off", teams["cs"], status="offline")
    on_break = member("cs_break", teams["cs"], status="break")
    first = exc.exception_raise(order_id=ingest("EX-1").pk, type_code="damaged", actor=system_actor("t"))
    assert first.owner == on_break  # nobody online: someone at work rather than someone gone
    online = member("cs_on", teams["cs"])
    second = exc.exception_raise(order_id=ingest("EX-2").pk, type_code="damaged", actor=system_actor("t"))
    assert second.owner == online
    assert offline.exception_cases.count() == 0


def test_a_team_with_nobody_leaves_the_case_unowned_and_tells_the_team_robot(teams):
    order = ingest()
    case = exc.exception_raise(order_id=order.pk, type_code="address_ambiguous", actor=system_actor("t"))
    assert case.owner is None and case.status == "open"
    robot = Notification.objects.get(order=order, template="exception_raised")
    assert (robot.channel, robot.target) == ("wecom", "https://qyapi.example/cs-robot")


def test_a_type_without_a_team_leaves_the_case_unowned(jd):
    order = ingest()
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    assert case.owner is None and case.team is None
    assert Order.objects.get(pk=order.pk).stage == "exception"


def test_a_customer_delay_notes_it_moves_the_due_time_and_texts_the_customer(teams):
    order = ingest(note="请周末送")
    Order.objects.filter(pk=order.pk).update(sla_level=1, sla_level_at=timezone.now())
    until = (timezone.now() + timedelta(days=3)).replace(second=0, microsecond=0)
    case = exc.exception_raise(
        order_id=order.pk,
        type_code="customer_delay",
        actor=person("clerk", "customer_service"),
        note="客户出差",
        delay_until=until,
    )
    order.refresh_from_db()
    when = timezone.localtime(until).strftime("%Y-%m-%d %H:%M")
    # not held: the order stays in its stage, its due time moves and the ladder starts again
    assert order.stage == "pending_review" and order.held_stage == ""
    assert order.due_at == until and order.sla_level == 0
    assert order.note.startswith("请周末送\n") and when in order.note and "客户出差" in order.note
    # the edit is audited with the due time's from and to
    edit = OrderEvent.objects.get(order=order, kind="edit")
    assert edit.changes["due_at"][1] == until.isoformat() and edit.changes["note"][0] == "请周末送"
    assert edit.reason == "客户要求延期: 客户出差" and edit.actor == "clerk"
    # the case is the record of the request, resolved at once
    assert (case.status, case.delay_until, case.resolved_by_name) == ("resolved", until, "clerk")
    assert when in case.resolution
    # the customer is told by SMS
    sms = Notification.objects.get(order=order, channel="sms")
    assert (sms.template, sms.target) == ("exception_delay_customer", "+8613510001000")
    assert sms.body == f"【派单】王小明您好，您的订单{order.tag}已按您的要求延期至{when}。"


# --- Resolving --------------------------------------------------------------------------------
def test_resolving_returns_the_order_to_its_stage_and_texts_the_customer(teams):
    owner = member("cs_1", teams["cs"])
    order = in_picking()
    case = exc.exception_raise(order_id=order.pk, type_code="address_ambiguous", actor=system_actor("t"))
    resolved = exc.exception_resolve(
        case_id=case.pk, actor=user_actor(owner.user), resolution="地址已与客户确认"
    )
    order.refresh_from_db()
    assert (order.stage, order.held_stage) == ("picking", "")
    assert resolved.status == "resolved" and resolved.resolved_by_name == "cs_1"
    assert resolved.resolution == "地址已与客户确认" and resolved.resolved_at is not None
    back = OrderEvent.objects.filter(order=order, kind="transition").last()
    assert (back.from_stage, back.to_stage, back.reason) == ("exception", "picking", "地址已与客户确认")
    sms = Notification.objects.get(order=order, channel="sms")
    assert (sms.template, sms.target) == ("exception_resolved_customer", "+8613510001000")
    assert sms.body == f"【派单】王小明您好，您的订单{order.tag}（地址不明确）已处理：地址已与客户确认"
    assert sms.payload["resolution"] == "地址已与客户确认" and sms.payload["customer"] == "王小明"


def test_a_failing_sms_gateway_never_blocks_resolving(teams, settings, django_capture_on_commit_callbacks):
    # given an SMS gateway nobody answers (port 9 refuses connections)
    settings.SMS_BACKEND = "dashboards.backends.HttpGatewaySmsBackend"
    settings.SMS_GATEWAY_URL = "http://127.0.0.1:9/sms"
    order = in_picking()
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    # when the case is resolved and the messages are sent after commit
    with django_capture_on_commit_callbacks(execute=True):
        exc.exception_resolve(case_id=case.pk, actor=system_actor("t"), resolution="已补发")
    # then the order is back and the case closed, and the SMS waits for a retry with its error
    assert Order.objects.get(pk=order.pk).stage == "picking"
    assert ExceptionCase.objects.get(pk=case.pk).status == "resolved"
    sms = Notification.objects.get(order=order, channel="sms")
    assert sms.status == "pending" and sms.attempts == 1 and "unreachable" in sms.last_error


def test_a_customer_without_a_phone_gets_no_sms_and_resolving_still_works(teams):
    order = ingest(customer={"phone": ""})
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    exc.exception_resolve(case_id=case.pk, actor=system_actor("t"), resolution="已补发")
    assert Order.objects.get(pk=order.pk).stage == "pending_review"
    assert not Notification.objects.filter(order=order, channel="sms").exists()


def test_resolving_a_case_whose_order_was_cancelled_meanwhile_only_closes_it(teams):
    order = ingest()
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    # an order that left the lane by a path that did not close its case (data from before cases)
    Order.objects.filter(pk=order.pk).update(stage="cancelled", held_stage="")
    events = OrderEvent.objects.count()
    exc.exception_resolve(case_id=case.pk, actor=person("sup", "supervisor"), resolution="订单已取消")
    case.refresh_from_db()
    assert case.status == "resolved" and case.resolution == "订单已取消"
    assert Order.objects.get(pk=order.pk).stage == "cancelled"
    assert OrderEvent.objects.count() == events
    assert not Notification.objects.filter(order=order, channel="sms").exists()


# --- Plain stage moves ------------------------------------------------------------------------
def test_a_plain_move_to_exception_opens_a_hold_case_and_moving_back_resolves_it(teams):
    owner = member("cs_1", teams["cs"])
    order = in_picking()
    order_transition(order_id=order.pk, to="exception", actor=person("sup", "supervisor"), reason="外箱压坏")
    case = ExceptionCase.objects.get(order=order)
    assert (case.status, case.type.code, case.note, case.owner) == ("open", "other", "外箱压坏", owner)
    assert case.held_stage == "picking" and case.raised_by_name == "sup"
    assert Notification.objects.get(order=order, channel="in_app").user == owner.user

    order_transition(order_id=order.pk, to="picking", actor=person("sup", "supervisor"), reason="已换箱")
    case.refresh_from_db()
    assert (case.status, case.resolution, case.resolved_by_name) == ("resolved", "已换箱", "sup")
    sms = Notification.objects.get(order=order, channel="sms")
    assert sms.body.endswith("（其他异常）已处理：已换箱")
    # one stage move each way: the hook adds no moves of its own
    assert OrderEvent.objects.filter(order=order, kind="transition").count() == 3


def test_cancelling_an_order_in_the_lane_closes_its_case(teams):
    order = ingest()
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    order_transition(order_id=order.pk, to="cancelled", actor=person("sup", "supervisor"))
    case.refresh_from_db()
    assert case.status == "resolved" and case.resolution  # a default text, never blank
    assert Notification.objects.get(order=order, channel="sms").payload["resolution"] == case.resolution


def test_a_plain_move_uses_the_other_type_and_without_it_the_first_hold_type(teams):
    # "other" (seeded) is chosen over "damaged", which sorts first
    order = ingest()
    order_transition(order_id=order.pk, to="exception", actor=system_actor("t"), reason="客户来电")
    assert ExceptionCase.objects.get(order=order).type.code == "other"
    ExceptionType.objects.filter(code="other").update(is_active=False)
    second = ingest("EX-2")
    order_transition(order_id=second.pk, to="exception", actor=system_actor("t"), reason="客户来电")
    assert ExceptionCase.objects.get(order=second).type.code == "damaged"


def test_a_plain_move_with_no_hold_type_configured_still_moves(jd):
    ExceptionType.objects.filter(route="hold").update(is_active=False)
    order = ingest()
    order_transition(order_id=order.pk, to="exception", actor=system_actor("t"))
    assert Order.objects.get(pk=order.pk).stage == "exception"
    assert not ExceptionCase.objects.exists()


# --- Refusals: a clear reason, and nothing stored ---------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"type_code": "meteor_strike"}, exc.UnknownExceptionType, "not an active exception type"),
        ({"type_code": "customer_delay"}, exc.DelayUntilInvalid, "send delay_until"),
        (
            {"type_code": "customer_delay", "delay_until": timezone.now() - timedelta(minutes=1)},
            exc.DelayUntilInvalid,
            "not in the future",
        ),
        (
            {"type_code": "damaged", "delay_until": timezone.now() + timedelta(days=1)},
            exc.DelayUntilInvalid,
            "Only a reschedule type",
        ),
        ({"type_code": "damaged", "note": "x" * 2001}, exc.NoteTooLong, "at most 2000"),
    ],
)
def test_bad_input_is_refused_with_its_reason_and_nothing_is_stored(teams, kwargs, error, words):
    order = ingest()
    before = stored()
    with pytest.raises(error) as raised:
        exc.exception_raise(order_id=order.pk, actor=person("sup", "supervisor"), **kwargs)
    assert words in raised.value.message
    assert stored() == before


def test_a_switched_off_type_is_unknown(teams):
    ExceptionType.objects.filter(code="damaged").update(is_active=False)
    order = ingest()
    before = stored()
    with pytest.raises(exc.UnknownExceptionType, match="address_ambiguous"):  # lists the ones there are
        exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    assert stored() == before


def test_a_second_open_exception_is_refused(teams):
    order = ingest()
    exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("first"))
    before = stored()
    for code, extra in [
        ("address_ambiguous", {}),
        ("customer_delay", {"delay_until": timezone.now() + timedelta(days=1)}),
    ]:
        with pytest.raises(exc.ExceptionAlreadyOpen, match="already has an open exception") as raised:
            exc.exception_raise(order_id=order.pk, type_code=code, actor=system_actor("t"), **extra)
        assert "商品破损" in raised.value.message and "first" in raised.value.message
    assert stored() == before


@pytest.mark.parametrize("stage", ["done", "cancelled"])
def test_a_closed_order_takes_no_exception(teams, stage):
    order = in_picking()
    if stage == "done":
        order_transition(order_id=order.pk, to="shipping", actor=system_actor("t"))
    order_transition(order_id=order.pk, to=stage, actor=system_actor("t"))
    before = stored()
    with pytest.raises(exc.OrderNotOpen, match="open orders only"):
        exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    assert stored() == before


def test_a_quarantined_order_waits_for_its_review(teams):
    order = ingest()
    order_transition(order_id=order.pk, to="quarantined", actor=system_actor("risk"))
    before = stored()
    with pytest.raises(exc.ExceptionRefused, match="held by risk control"):
        exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    assert stored() == before


def test_a_resolution_must_say_something_short_and_a_case_resolves_once(teams):
    order = ingest()
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    before = stored()
    with pytest.raises(exc.ResolutionInvalid, match="Say how"):
        exc.exception_resolve(case_id=case.pk, actor=system_actor("t"), resolution="   ")
    with pytest.raises(exc.ResolutionInvalid, match="at most 500"):
        exc.exception_resolve(case_id=case.pk, actor=system_actor("t"), resolution="好" * 501)
    with pytest.raises(exc.ExceptionNotFound):
        exc.exception_resolve(case_id=case.pk + 1000, actor=system_actor("t"), resolution="ok")
    assert stored() == before
    exc.exception_resolve(case_id=case.pk, actor=system_actor("t"), resolution="已处理")
    before = stored()
    with pytest.raises(exc.ExceptionNotOpen, match="already resolved by t: 已处理"):
        exc.exception_resolve(case_id=case.pk, actor=system_actor("t"), resolution="再来一次")
    assert stored() == before


# --- Roles ------------------------------------------------------------------------------------
def test_warehouse_raises_only_in_picking_and_shipping(teams):
    order = ingest()
    before = stored()
    with pytest.raises(RoleMayNotTransition, match="warehouse"):
        exc.exception_raise(order_id=order.pk, type_code="out_of_stock", actor=person("wh", "warehouse"))
    assert stored() == before
    order_transition(order_id=order.pk, to="picking", actor=system_actor("t"))
    exc.exception_raise(order_id=order.pk, type_code="out_of_stock", actor=person("wh", "warehouse"))
    assert Order.objects.get(pk=order.pk).stage == "exception"


def test_warehouse_cannot_reschedule_and_risk_reviewers_raise_nothing(teams):
    order = in_picking()
    before = stored()
    later = timezone.now() + timedelta(days=2)
    with pytest.raises(exc.MayNotHandleException, match="warehouse"):
        exc.exception_raise(
            order_id=order.pk, type_code="customer_delay", delay_until=later, actor=person("wh", "warehouse")
        )
    with pytest.raises(exc.MayNotHandleException, match="risk_reviewer"):
        exc.exception_raise(order_id=order.pk, type_code="damaged", actor=person("rv", "risk_reviewer"))
    assert stored() == before


def test_an_agent_raises_on_their_own_orders_only(teams):
    order = ingest()
    mine = person("agent_a", "agent")
    before = stored()
    with pytest.raises(exc.MayNotHandleException, match="own"):
        exc.exception_raise(order_id=order.pk, type_code="damaged", actor=mine)
    assert stored() == before
    Order.objects.filter(pk=order.pk).update(owner=mine.user)
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=mine)
    assert case.status == "open"


def test_the_owner_agent_resolves_their_case_and_another_agent_may_not(teams):
    owner = member("cs_agent", teams["cs"], "agent")
    order = ingest()
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    assert case.owner == owner
    before = stored()
    with pytest.raises(exc.MayNotHandleException, match="own"):
        exc.exception_resolve(case_id=case.pk, actor=person("other", "agent"), resolution="done")
    assert stored() == before
    exc.exception_resolve(case_id=case.pk, actor=user_actor(owner.user), resolution="已处理")
    assert Order.objects.get(pk=order.pk).stage == "pending_review"


def test_the_role_table_still_decides_where_an_agent_may_return_an_order(teams):
    owner = member("cs_agent", teams["cs"], "agent")
    order = in_picking()
    order_transition(order_id=order.pk, to="shipping", actor=system_actor("t"))
    case = exc.exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    before = stored()
    with pytest.raises(RoleMayNotTransition, match="'exception' to 'shipping'"):
        exc.exception_resolve(case_id=case.pk, actor=user_actor(owner.user), resolution="已处理")
    assert stored() == before
    assert ExceptionCase.objects.get(pk=case.pk).status == "open"


def test_a_waiting_order_leaves_the_pool_while_in_exception_and_returns_when_resolved(teams):
    from dispatch.models import Assignment, PoolEntry
    from dispatch.services import dispatch_tick

    # given an order nobody has accepted yet, on offer to an online agent
    AgentFactory(status="online")
    order = ingest("EX-POOL")
    dispatch_tick()
    offer = Assignment.objects.get(order=order, state="offered")
    # when customer service raises an exception on it
    case = exc.exception_raise(
        order_id=order.pk, type_code="address_ambiguous", actor=person("cs9", "customer_service")
    )
    # then the offer is withdrawn and no round offers it while it is held
    offer.refresh_from_db()
    assert offer.state == "released"
    assert PoolEntry.objects.get(order=order).state == "closed"
    dispatch_tick()
    assert not Assignment.objects.filter(order=order, state="offered").exists()
    # and once resolved it waits in the pool again and is offered
    exc.exception_resolve(case_id=case.pk, actor=person("cs8", "customer_service"), resolution="地址已确认")
    assert PoolEntry.objects.get(order=order).state == "waiting"
    dispatch_tick()
    assert Assignment.objects.filter(order=order, state="offered").exists()
