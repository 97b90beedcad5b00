"""The dispatch and agent REST API: who may do what, and bad input answered clearly with
nothing changed."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from agents.models import Agent, Rating
from dispatch import services
from dispatch.models import Assignment, Inquiry, PoolEntry
from orders.actors import system_actor
from orders.services import order_ingest
from tests.factories import AgentFactory, SkillFactory, order_payload, token_for

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def ingest(external_id: str, **overrides):
    return order_ingest(
        payload=order_payload(external_id=external_id, **overrides), actor=system_actor("test")
    ).order


@pytest.fixture
def offered(jd):
    """One agent with one open offer."""
    agent = AgentFactory()
    order = ingest("X1")
    services.dispatch_tick()
    return agent, order, Assignment.objects.get(order=order)


def test_an_agent_lists_and_accepts_their_offer(offered):
    agent, order, offer = offered
    api = client_for(agent.user)

    listed = api.get("/api/assignments/?mine=1&state=offered")
    assert listed.status_code == 200
    [row] = listed.json()["results"]
    assert row["id"] == offer.pk and row["order_tag"] == order.tag and row["breakdown"]

    accepted = api.post(f"/api/assignments/{offer.pk}/accept/")
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted"
    again = api.post(f"/api/assignments/{offer.pk}/accept/")
    assert again.status_code == 409 and again.json()["code"] == "offer_not_open"


def test_another_agent_cannot_see_or_answer_someone_elses_offer(offered):
    _agent, _order, offer = offered
    stranger = client_for(AgentFactory().user)

    assert stranger.get("/api/assignments/").json()["results"] == []
    response = stranger.post(f"/api/assignments/{offer.pk}/accept/")
    assert response.status_code == 404
    assert stranger.post(f"/api/assignments/{offer.pk}/reject/", {"reason": "x"}).status_code == 404
    offer.refresh_from_db()
    assert offer.state == "offered"


def test_rejecting_with_a_reason_records_it(offered):
    agent, order, offer = offered
    response = client_for(agent.user).post(
        f"/api/assignments/{offer.pk}/reject/", {"reason": "不在服务范围"}, format="json"
    )
    assert response.status_code == 200
    offer.refresh_from_db()
    assert offer.state == "rejected" and offer.reason == "不在服务范围"
    assert order.events.filter(reason__contains="不在服务范围").exists()


def test_bad_assignment_filters_are_refused_with_the_known_values(offered):
    agent, _order, _offer = offered
    response = client_for(agent.user).get("/api/assignments/?state=maybe")
    assert response.status_code == 400
    assert "maybe" in response.json()["state"][0] and "offered" in response.json()["state"][0]


def test_accounts_without_an_agent_profile_get_403_on_agent_endpoints(jd, make_user):
    cs = client_for(make_user("cs", "customer_service"))
    for path in ("/api/agents/me/", "/api/assignments/?mine=1"):
        response = cs.get(path)
        assert response.status_code == 403, path
        assert "agent profile" in response.json()["detail"]
    assert cs.post("/api/agents/me/status/", {"status": "online"}).status_code == 403


def test_status_and_location_update_the_agent_and_bad_values_change_nothing(jd):
    agent = AgentFactory(status="break")
    api = client_for(agent.user)

    bad = api.post("/api/agents/me/status/", {"status": "sleeping"}, format="json")
    assert bad.status_code == 400 and "sleeping" in bad.json()["status"][0]
    off_map = api.post("/api/agents/me/location/", {"lat": 123, "lng": 10}, format="json")
    assert off_map.status_code == 400 and "lat" in off_map.json()
    agent.refresh_from_db()
    assert agent.status == "break" and agent.latitude is None

    assert (
        api.post("/api/agents/me/status/", {"status": "online"}, format="json").json()["status"] == "online"
    )
    moved = api.post("/api/agents/me/location/", {"lat": "22.54", "lng": "114.06"}, format="json")
    assert moved.status_code == 200 and moved.json()["location_at"]


def test_going_offline_through_the_api_releases_open_offers(offered):
    agent, order, offer = offered
    client_for(agent.user).post("/api/agents/me/status/", {"status": "offline"}, format="json")
    offer.refresh_from_db()
    assert offer.state == "released"
    assert PoolEntry.objects.get(order=order).state == "waiting"


def test_a_rating_updates_the_owning_agents_profile_once(offered, api):
    agent, order, offer = offered
    services.assignment_accept(assignment_id=offer.pk, agent=agent)

    response = api.post(
        f"/api/orders/{order.pk}/rating/",
        {"score": 5, "on_time": True, "fixed_first_time": True},
        format="json",
    )
    assert response.status_code == 201
    agent.refresh_from_db()
    assert agent.good_rate_7d == 1.0 and agent.on_time_rate == 1.0 and agent.ratings_30d == 1
    again = api.post(f"/api/orders/{order.pk}/rating/", {"score": 1}, format="json")
    assert again.status_code == 409 and "already rated" in again.json()["detail"]
    assert Rating.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"score": 0}, "score"),
        ({"score": 6}, "score"),
        ({}, "score"),
        ({"score": 4, "on_time": "perhaps"}, "on_time"),
    ],
)
def test_bad_ratings_are_refused_and_nothing_is_stored(offered, api, body, field):
    agent, order, offer = offered
    services.assignment_accept(assignment_id=offer.pk, agent=agent)
    response = api.post(f"/api/orders/{order.pk}/rating/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert Rating.objects.count() == 0


def test_rating_an_order_nobody_owns_is_a_clear_409(jd, api):
    order = ingest("X2")
    response = api.post(f"/api/orders/{order.pk}/rating/", {"score": 4}, format="json")
    assert response.status_code == 409 and "no agent" in response.json()["detail"]


def test_supervisors_assign_by_hand_and_others_may_not(jd, make_user, api):
    agent = AgentFactory(capacity=1, status="offline")
    order, other = ingest("X3"), ingest("X4")
    assert (
        client_for(make_user("cs", "customer_service"))
        .post(f"/api/orders/{order.pk}/assign/", {"agent": agent.pk}, format="json")
        .status_code
        == 403
    )
    assert (
        client_for(agent.user).post(f"/api/orders/{order.pk}/assign/", {"agent": agent.pk}).status_code == 403
    )

    done = api.post(f"/api/orders/{order.pk}/assign/", {"agent": agent.pk}, format="json")
    assert done.status_code == 200 and done.json()["manual"] and done.json()["state"] == "accepted"
    full = api.post(f"/api/orders/{other.pk}/assign/", {"agent": agent.pk}, format="json")
    assert full.status_code == 409 and full.json()["code"] == "capacity_exceeded"
    assert "force" in full.json()["detail"]
    missing = api.post(f"/api/orders/{other.pk}/assign/", {"agent": 99999}, format="json")
    assert missing.status_code == 404
    bad = api.post(f"/api/orders/{other.pk}/assign/", {"agent": "someone"}, format="json")
    assert bad.status_code == 400 and "agent" in bad.json()
    assert Assignment.objects.filter(order=other).count() == 0
    assert api.post("/api/orders/424242/assign/", {"agent": agent.pk}, format="json").status_code == 404


def test_an_agent_asking_for_another_agents_order_gets_404(offered):
    agent, order, offer = offered
    services.assignment_accept(assignment_id=offer.pk, agent=agent)
    assert client_for(agent.user).get(f"/api/orders/{order.pk}/").status_code == 200
    assert client_for(AgentFactory().user).get(f"/api/orders/{order.pk}/").status_code == 404


def test_inquiries_are_created_routed_listed_and_closed_through_the_api(jd, api):
    SkillFactory(code="aircon", keywords=["空调"])
    agent = AgentFactory(skills={"aircon": 3})
    created = api.post(
        "/api/inquiries/",
        {"channel": "jd", "account_id": "buyer-9", "customer_name": "赵", "text": "空调怎么清洗？"},
        format="json",
    )
    assert created.status_code == 201 and created.json()["skills"] == ["aircon"]
    inquiry_id = created.json()["id"]
    services.dispatch_tick()
    offer = Assignment.objects.get(inquiry_id=inquiry_id)
    services.assignment_accept(assignment_id=offer.pk, agent=agent)

    mine = client_for(agent.user).get("/api/inquiries/").json()["results"]
    assert [i["id"] for i in mine] == [inquiry_id]
    closed = client_for(agent.user).post(f"/api/inquiries/{inquiry_id}/close/")
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    twice = client_for(agent.user).post(f"/api/inquiries/{inquiry_id}/close/")
    assert twice.status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "nowhere", "text": "hi"}, "channel"),
        ({"channel": "jd", "text": "   "}, "text"),
        ({"channel": "jd"}, "text"),
        ({"channel": "jd", "text": "x" * 4001}, "text"),
    ],
)
def test_bad_inquiries_are_refused_and_nothing_is_stored(jd, api, body, field):
    response = api.post("/api/inquiries/", body, format="json")
    assert response.status_code == 400 and field in response.json()
    assert Inquiry.objects.count() == 0 and PoolEntry.objects.count() == 0


def test_the_pool_shows_supervisors_why_each_item_waits(jd, api, make_user):
    order = ingest("X5")
    services.dispatch_tick()  # no agents at all: nobody can take it

    rows = api.get("/api/pool/?state=escalated").json()["results"]
    assert [(r["order_tag"], r["wait_reason"]) for r in rows] == [(order.tag, "no_qualified_agent")]
    assert client_for(make_user("cs", "customer_service")).get("/api/pool/").status_code == 403
    assert api.get("/api/pool/?state=lost").status_code == 400


def test_agents_me_shows_the_profile(jd):
    agent = AgentFactory(skills={"aircon": 4})
    body = client_for(agent.user).get("/api/agents/me/").json()
    assert body["skills"] == {"aircon": 4} and body["status"] == "online"
    assert Agent.objects.get(pk=body["id"]) == agent


def test_supervisors_assign_an_inquiry_by_hand_and_pull_it_back(jd, api):
    agent = AgentFactory(status="offline")
    inquiry = services.inquiry_create(
        channel=jd, account_id="u7", customer_name="", text="发票怎么开", vip=False
    )

    given = api.post(f"/api/inquiries/{inquiry.pk}/assign/", {"agent": agent.pk}, format="json")
    assert given.status_code == 200 and given.json()["inquiry"] == inquiry.pk
    inquiry.refresh_from_db()
    assert (inquiry.state, inquiry.agent_id) == ("assigned", agent.pk)

    pulled = api.post(f"/api/inquiries/{inquiry.pk}/assign/", {"agent": None}, format="json")
    assert pulled.status_code == 204 and pulled.content == b""
    inquiry.refresh_from_db()
    assert (inquiry.state, inquiry.agent_id) == ("open", None)
    assert PoolEntry.objects.get(inquiry=inquiry).state == "waiting"
    assert api.post("/api/inquiries/98765/assign/", {"agent": agent.pk}, format="json").status_code == 404
