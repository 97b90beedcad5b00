"""The exception API: raise, resolve, list and types; bad input is a 400 naming the field,
refusals are 403/404/409 with a stable code, and nothing is stored when refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Team
from dashboards.models import Notification
from orders.actors import system_actor
from orders.exceptions import exception_raise
from orders.models import ExceptionCase, ExceptionType, Order, OrderEvent
from orders.services import order_ingest, order_transition
from tests.factories import AgentFactory, UserFactory, order_payload, token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def cs_team(jd):
    team = Team.objects.create(code="cs", name="客服组")
    ExceptionType.objects.update(team=team)
    return team


def client_for(user):
    from rest_framework.test import APIClient

    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def agent_in(team: Team, username: str, *roles: str):
    agent = AgentFactory(
        user=UserFactory(username=username, roles=list(roles) or ["agent"]), display_name=username
    )
    agent.teams.add(team)
    return agent


def ingest(external_id: str = "API-1", owner=None) -> Order:
    result = order_ingest(payload=order_payload(external_id=external_id), actor=system_actor("test"))
    assert result.status == "created", result.errors
    if owner is not None:
        Order.objects.filter(pk=result.order.pk).update(owner=owner)
    return Order.objects.get(pk=result.order.pk)


def stored() -> tuple:
    return (
        ExceptionCase.objects.count(),
        OrderEvent.objects.count(),
        Notification.objects.count(),
        sorted(Order.objects.values_list("pk", "stage", "held_stage", "due_at", "note")),
    )


def raise_url(order: Order) -> str:
    return f"/api/orders/{order.pk}/exceptions/"


# --- Raise ------------------------------------------------------------------------------------
def test_raising_answers_201_with_the_case_and_its_owner(cs_team, api_as):
    owner = agent_in(cs_team, "cs_owner", "customer_service")
    order = ingest()
    response = api_as("clerk", "customer_service").post(
        raise_url(order), {"type": "address_ambiguous", "note": "门牌号缺失"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["order"] == order.pk and body["order_tag"] == order.tag and body["order_stage"] == "exception"
    assert (body["type"], body["type_name"], body["route"], body["status"]) == (
        "address_ambiguous",
        "地址不明确",
        "reconfirm",
        "open",
    )
    assert (body["held_stage"], body["team"], body["owner"], body["owner_name"]) == (
        "pending_review",
        "cs",
        owner.pk,
        "cs_owner",
    )
    assert body["raised_by"] == "clerk" and body["note"] == "门牌号缺失" and body["resolved_at"] is None


def test_a_reschedule_answers_201_already_resolved_with_the_new_due_time(cs_team, api_as):
    order = ingest()
    until = (timezone.now() + timedelta(days=2)).replace(microsecond=0)
    response = api_as("clerk", "customer_service").post(
        raise_url(order),
        {"type": "customer_delay", "note": "客户出差", "delay_until": until.isoformat()},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "resolved" and response.json()["order_stage"] == "pending_review"
    assert Order.objects.get(pk=order.pk).due_at == until


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"type": "meteor_strike"}, "type", "unknown_exception_type"),
        ({}, "type", "invalid"),
        ({"type": "customer_delay"}, "delay_until", "delay_until_invalid"),
        (
            {"type": "customer_delay", "delay_until": "2001-01-01T00:00:00+08:00"},
            "delay_until",
            "delay_until_invalid",
        ),
        ({"type": "customer_delay", "delay_until": "next tuesday"}, "delay_until", "invalid"),
        (
            {"type": "damaged", "delay_until": "2099-01-01T00:00:00+08:00"},
            "delay_until",
            "delay_until_invalid",
        ),
        ({"type": "damaged", "note": "x" * 2001}, "note", "invalid"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_stored(cs_team, api, body, field, code):
    order = ingest()
    before = stored()
    response = api.post(raise_url(order), body, format="json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] == code and field in answer["errors"], answer
    assert answer["errors"][field][0]  # a sentence, not just a code
    assert stored() == before


def test_an_unknown_type_lists_the_ones_there_are(cs_team, api):
    response = api.post(raise_url(ingest()), {"type": "meteor_strike"}, format="json")
    detail = response.json()["detail"]
    assert "meteor_strike" in detail and "out_of_stock" in detail and "customer_delay" in detail


def test_a_second_open_exception_and_a_closed_order_are_409(cs_team, api):
    order = ingest()
    assert api.post(raise_url(order), {"type": "damaged"}, format="json").status_code == 201
    before = stored()
    again = api.post(raise_url(order), {"type": "address_ambiguous"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "exception_already_open"
    assert "resolve it first" in again.json()["detail"]
    assert stored() == before

    done = ingest("API-2")
    for stage in ("picking", "shipping", "done"):
        order_transition(order_id=done.pk, to=stage, actor=system_actor("t"))
    before = stored()
    closed = api.post(raise_url(done), {"type": "damaged"}, format="json")
    assert closed.status_code == 409 and closed.json()["code"] == "order_closed"
    assert stored() == before


def test_warehouse_may_not_raise_on_an_order_pending_review(cs_team, api_as):
    order = ingest()
    before = stored()
    response = api_as("wh", "warehouse").post(raise_url(order), {"type": "out_of_stock"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden" and "warehouse" in response.json()["detail"]
    assert stored() == before


def test_an_agent_gets_404_for_someone_elses_order_and_raises_on_their_own(cs_team, api_as, make_user):
    mine_user = make_user("agent_a", "agent")
    other = ingest("API-OTHER", owner=make_user("agent_b", "agent"))
    mine = ingest("API-MINE", owner=mine_user)
    client = client_for(mine_user)
    before = stored()
    response = client.post(raise_url(other), {"type": "damaged"}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert stored() == before
    assert client.post(raise_url(mine), {"type": "damaged"}, format="json").status_code == 201


# --- Resolve ----------------------------------------------------------------------------------
def test_resolving_answers_200_and_the_order_is_back(cs_team, api):
    order = ingest()
    order_transition(order_id=order.pk, to="picking", actor=system_actor("t"))
    case_id = api.post(raise_url(order), {"type": "damaged"}, format="json").json()["id"]
    response = api.post(f"/api/exceptions/{case_id}/resolve/", {"resolution": "已补发新品"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["resolution"], body["resolved_by"], body["order_stage"]) == (
        "resolved",
        "已补发新品",
        "sup",
        "picking",
    )
    sms = Notification.objects.get(order=order, channel="sms")
    assert sms.body.endswith("（商品破损）已处理：已补发新品")


@pytest.mark.parametrize(
    ("body", "words"),
    [({"resolution": "  "}, "Say how"), ({"resolution": "好" * 501}, "at most 500"), ({}, "required")],
)
def test_a_resolution_empty_or_too_long_is_a_400_and_the_case_stays_open(cs_team, api, body, words):
    order = ingest()
    case_id = api.post(raise_url(order), {"type": "damaged"}, format="json").json()["id"]
    before = stored()
    response = api.post(f"/api/exceptions/{case_id}/resolve/", body, format="json")
    assert response.status_code == 400
    assert "resolution" in response.json()["errors"] and words in str(response.json())
    assert stored() == before


def test_resolving_twice_is_409_and_an_unknown_case_404(cs_team, api):
    order = ingest()
    case_id = api.post(raise_url(order), {"type": "damaged"}, format="json").json()["id"]
    assert (
        api.post(f"/api/exceptions/{case_id}/resolve/", {"resolution": "ok"}, format="json").status_code
        == 200
    )
    again = api.post(f"/api/exceptions/{case_id}/resolve/", {"resolution": "ok"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "exception_not_open"
    missing = api.post(f"/api/exceptions/{case_id + 999}/resolve/", {"resolution": "ok"}, format="json")
    assert missing.status_code == 404


def test_an_agent_sees_and_resolves_the_case_they_own_but_not_anothers(cs_team, make_user):
    owner = agent_in(cs_team, "cs_agent")
    order = ingest()  # nobody's order: the agent sees the case because it is theirs
    case = exception_raise(order_id=order.pk, type_code="damaged", actor=system_actor("t"))
    assert case.owner == owner
    stranger = client_for(make_user("stranger", "agent"))
    before = stored()
    response = stranger.post(f"/api/exceptions/{case.pk}/resolve/", {"resolution": "x"}, format="json")
    assert response.status_code == 404
    assert stranger.get("/api/exceptions/").json()["results"] == []
    assert stored() == before
    mine = client_for(owner.user)
    listed = mine.get("/api/exceptions/?status=open&mine=true").json()["results"]
    assert [c["id"] for c in listed] == [case.pk]
    assert (
        mine.post(f"/api/exceptions/{case.pk}/resolve/", {"resolution": "已处理"}, format="json").status_code
        == 200
    )


# --- Lists ------------------------------------------------------------------------------------
def test_the_list_filters_by_status_order_and_type(cs_team, api):
    first, second = ingest("API-1"), ingest("API-2")
    a = api.post(raise_url(first), {"type": "damaged"}, format="json").json()["id"]
    b = api.post(raise_url(second), {"type": "address_ambiguous"}, format="json").json()["id"]
    api.post(f"/api/exceptions/{a}/resolve/", {"resolution": "ok"}, format="json")
    ids = lambda query: [c["id"] for c in api.get(f"/api/exceptions/{query}").json()["results"]]  # noqa: E731
    assert ids("") == [b, a]
    assert ids("?status=open") == [b]
    assert ids("?status=resolved") == [a]
    assert ids(f"?order={first.pk}") == [a]
    assert ids("?type=address_ambiguous") == [b]
    bad = api.get("/api/exceptions/?status=sideways")
    assert bad.status_code == 400 and "status" in bad.json()


def test_the_list_reads_in_a_fixed_number_of_queries(cs_team, api, django_assert_max_num_queries):
    for n in range(6):
        api.post(raise_url(ingest(f"API-{n}")), {"type": "damaged"}, format="json")
    with django_assert_max_num_queries(8):
        assert len(api.get("/api/exceptions/?status=open").json()["results"]) == 6


def test_the_types_are_the_active_ones(cs_team, api):
    ExceptionType.objects.filter(code="damaged").update(is_active=False)
    types = api.get("/api/exception-types/").json()
    assert [t["code"] for t in types] == ["address_ambiguous", "customer_delay", "other", "out_of_stock"]
    delay = types[1]
    assert (
        delay["route"] == "reschedule"
        and delay["needs_delay_until"] is True
        and delay["holds_order"] is False
    )
    assert delay["team"] == "cs"


# --- Plain moves through the transition API ---------------------------------------------------
def test_a_board_move_to_exception_opens_a_case_and_moving_back_resolves_it(cs_team, api):
    owner = agent_in(cs_team, "cs_owner", "customer_service")
    order = ingest()
    moved = api.post(
        f"/api/orders/{order.pk}/transition/", {"to": "exception", "reason": "客户投诉"}, format="json"
    )
    assert moved.status_code == 200
    [case] = api.get(f"/api/exceptions/?order={order.pk}&status=open").json()["results"]
    assert (case["type"], case["note"], case["owner"]) == ("other", "客户投诉", owner.pk)
    back = api.post(
        f"/api/orders/{order.pk}/transition/", {"to": "pending_review", "reason": "已安抚"}, format="json"
    )
    assert back.status_code == 200
    [case] = api.get(f"/api/exceptions/?order={order.pk}").json()["results"]
    assert (case["status"], case["resolution"]) == ("resolved", "已安抚")


# --- Admin ------------------------------------------------------------------------------------
def test_admin_refuses_a_customer_template_that_is_not_an_sms_template(cs_team, client, make_user):
    boss = make_user("root", "admin", is_superuser=True, is_staff=True)
    client.force_login(boss)
    exc_type = ExceptionType.objects.get(code="damaged")
    form = {
        "code": "damaged",
        "name": "商品破损",
        "route": "hold",
        "team": cs_team.pk,
        "notify_emails": "",
        "notify_wecom_url": "",
        "customer_template": "exception_raised",  # exists, but for in-app, e-mail and WeCom only
        "is_active": "on",
    }
    url = f"/admin/orders/exceptiontype/{exc_type.pk}/change/"
    response = client.post(url, form, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "is not an SMS notification template" in response.content.decode()
    assert ExceptionType.objects.get(pk=exc_type.pk).customer_template == "exception_resolved_customer"

    bad_mail = client.post(
        url,
        {**form, "customer_template": "", "notify_emails": "buyer@x.com, nope"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert "is not an e-mail address" in bad_mail.content.decode()

    ok = client.post(
        url, {**form, "customer_template": "exception_resolved_customer", "notify_emails": "a@x.com; b@x.com"}
    )
    assert ok.status_code == 302
    assert ExceptionType.objects.get(pk=exc_type.pk).notify_emails == "a@x.com, b@x.com"
    assert client.get("/admin/orders/exceptioncase/?status__exact=open").status_code == 200
