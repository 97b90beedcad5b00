"""The agent's queue feed (/ws/agent/) and the queue pages: who may open them, what the
manual dispatch form does, and that every refusal says why and writes nothing."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client

from agents.models import Agent
from config.asgi import application
from dashboards.consumers import CLOSE_NOT_AN_AGENT, CLOSE_UNAUTHENTICATED
from dashboards.events import AGENT_CHANGED
from dispatch import services
from dispatch.models import Assignment, PoolEntry
from orders.actors import system_actor, user_actor
from orders.models import Order
from orders.services import order_ingest
from orders.states import Role
from tests.factories import (
    AgentFactory,
    ChannelFactory,
    RegionFactory,
    SkillFactory,
    UserFactory,
    order_payload,
)

ORIGIN = (b"origin", b"http://testserver")


def ingest(external_id: str, **overrides) -> Order:
    result = order_ingest(
        payload=order_payload(external_id=external_id, **overrides), actor=system_actor("test")
    )
    assert result.status == "created", result.errors
    return result.order


def session_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def make_roles() -> None:
    # A transactional test's flush drops the groups the data migration made.
    for role in Role:
        if role != Role.SYSTEM:
            Group.objects.get_or_create(name=role)


def connect(headers: list[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    async def attempt() -> tuple[bool, int | None]:
        communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    return async_to_sync(attempt)()


# --- The socket -------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_an_anonymous_agent_socket_is_closed_with_4401():
    # given no session cookie
    # when the socket connects
    connected, code = connect([ORIGIN])
    # then it is refused as unauthenticated
    assert (connected, code) == (False, CLOSE_UNAUTHENTICATED)


@pytest.mark.django_db(transaction=True)
def test_a_user_without_an_agent_profile_is_closed_with_4403():
    # given a supervisor, who has no agent profile
    make_roles()
    boss = UserFactory(username="boss", roles=["supervisor"])
    # when their socket connects
    connected, code = connect([ORIGIN, session_cookie(boss)])
    # then it is refused: only agents have a queue feed
    assert (connected, code) == (False, CLOSE_NOT_AN_AGENT)


@pytest.mark.django_db(transaction=True)
def test_a_socket_from_a_foreign_origin_is_refused():
    # given an agent's valid session, but a page on another site
    make_roles()
    agent = AgentFactory()
    # when the socket connects from that origin
    connected, _code = connect([(b"origin", b"http://evil.example"), session_cookie(agent.user)])
    # then the origin validator refuses it before the consumer runs
    assert connected is False


@pytest.mark.django_db(transaction=True)
def test_an_agent_is_told_to_refetch_when_the_tick_offers_them_an_order():
    # given an agent who is offline while an order comes in, so it waits in the pool
    make_roles()
    ChannelFactory(code="jd", tag_prefix="JD")
    agent = AgentFactory(status="offline")
    other = AgentFactory(status="offline")
    order = ingest("Q-WS-1")
    assert PoolEntry.objects.get(order=order).state == "waiting"
    Agent.objects.filter(pk=agent.pk).update(status="online")
    headers = [ORIGIN, session_cookie(agent.user)]

    async def scenario() -> tuple[dict, dict, bool]:
        communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        hello = await communicator.receive_json_from(timeout=2)
        await communicator.send_json_to({"type": "ping"})
        pong = await communicator.receive_json_from(timeout=2)
        # when the pool is matched (the push is sent after the tick's commit)
        report = await sync_to_async(services.dispatch_tick)()
        assert report.offered == 1
        changed = await communicator.receive_json_from(timeout=2)
        quiet = await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()
        return {"hello": hello, "pong": pong}, changed, quiet

    greetings, changed, quiet = async_to_sync(scenario)()

    # then the socket greeted the agent, answered the ping, and told the page to re-fetch
    assert greetings == {"hello": {"type": "hello", "agent": agent.pk}, "pong": {"type": "pong"}}
    assert changed == {"type": AGENT_CHANGED}
    assert quiet, "one offer is one message"
    offer = Assignment.objects.get(order=order)
    assert offer.agent_id == agent.pk and offer.state == "offered" and offer.agent_id != other.pk


@pytest.mark.django_db(transaction=True)
def test_another_agents_offer_is_not_pushed_to_this_agent():
    # given two agents; only the skilled one can take an air-conditioner order
    make_roles()
    ChannelFactory(code="jd", tag_prefix="JD")
    SkillFactory(code="aircon", keywords=["空调"])
    bystander = AgentFactory(status="offline")
    AgentFactory(status="offline", skills={"aircon": 5})
    ingest("Q-WS-2", category="空调安装")
    Agent.objects.update(status="online")
    headers = [ORIGIN, session_cookie(bystander.user)]

    async def scenario() -> bool:
        communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)
        assert (await communicator.connect())[0]
        await communicator.receive_json_from(timeout=2)  # hello
        # when the tick offers the order to the skilled agent
        await sync_to_async(services.dispatch_tick)()
        quiet = await communicator.receive_nothing(timeout=0.5)
        await communicator.disconnect()
        return quiet

    # then the bystander's page is not disturbed
    assert async_to_sync(scenario)()
    assert Assignment.objects.get().agent_id != bystander.pk


# --- The agent's page -----------------------------------------------------------------------
@pytest.fixture
def browser_client():
    return Client(HTTP_ACCEPT_LANGUAGE="en")


@pytest.mark.django_db
def test_the_queue_page_needs_a_login(browser_client):
    response = browser_client.get("/queue/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_a_user_without_an_agent_profile_gets_403_saying_so(browser_client, supervisor):
    # given a supervisor, who has no agent profile
    browser_client.force_login(supervisor)
    # when they open the queue page
    response = browser_client.get("/queue/")
    # then it is refused with the reason, and no queue script runs
    assert response.status_code == 403
    body = response.content.decode()
    assert "Your account has no agent profile; only agents have a queue." in body
    assert "queue.js" not in body


@pytest.mark.django_db
def test_an_agent_gets_their_queue_page_with_its_script_and_a_nav_link(browser_client):
    agent = AgentFactory(display_name="小王", status="break")
    browser_client.force_login(agent.user)

    response = browser_client.get("/queue/")

    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="queue"' in body and "/static/js/queue.js" in body and 'data-ws="/ws/agent/"' in body
    assert 'data-status="break" aria-pressed="true"' in body
    assert "小王" in body
    assert 'href="/queue/"' in body, "agents get the My queue link"
    assert 'href="/dispatch/manual/"' not in body, "agents do not dispatch by hand"


@pytest.mark.django_db
def test_nav_links_follow_the_role(browser_client, supervisor, make_user):
    # a supervisor without an agent profile: manual dispatch, no queue
    browser_client.force_login(supervisor)
    body = browser_client.get("/").content.decode()
    assert 'href="/dispatch/manual/"' in body and 'href="/queue/"' not in body
    # customer service: neither
    browser_client.force_login(make_user("cs", "customer_service"))
    body = browser_client.get("/").content.decode()
    assert 'href="/dispatch/manual/"' not in body and 'href="/queue/"' not in body


# --- Manual dispatch ------------------------------------------------------------------------
@pytest.fixture
def escalated(jd) -> Order:
    """An order no one on the roster can take: the tick escalates it to L2 at once."""
    order = ingest("Q-L2-1")
    services.dispatch_tick()
    entry = PoolEntry.objects.get(order=order)
    assert entry.state == "escalated", entry.wait_reason
    return order


@pytest.fixture
def as_supervisor(browser_client, supervisor):
    browser_client.force_login(supervisor)
    return browser_client


def post_assign(client: Client, order: Order, **fields: object):
    return client.post("/dispatch/manual/", {"order": order.pk, "action": "assign", **fields}, follow=True)


@pytest.mark.django_db
def test_an_agent_may_not_open_or_post_to_manual_dispatch(browser_client, escalated):
    # given an agent
    agent = AgentFactory()
    browser_client.force_login(agent.user)
    # when they open the page, or post an assignment to themselves
    page = browser_client.get("/dispatch/manual/")
    post = browser_client.post(
        "/dispatch/manual/", {"order": escalated.pk, "agent": agent.pk, "action": "assign"}
    )
    # then both are refused with the reason, and the order is not theirs
    assert page.status_code == 403 and post.status_code == 403
    assert "Only supervisors and admins may dispatch by hand." in page.content.decode()
    assert not Assignment.objects.filter(order=escalated).exists()
    escalated.refresh_from_db()
    assert escalated.owner_id is None


@pytest.mark.django_db
def test_the_manual_queue_lists_escalated_orders_with_why_they_wait(as_supervisor, escalated):
    AgentFactory(display_name="老李", capacity=3)

    response = as_supervisor.get("/dispatch/manual/")

    assert response.status_code == 200
    body = response.content.decode()
    assert f'href="/orders/{escalated.pk}/"' in body and escalated.tag in body
    assert "No agent can take it" in body  # the wait reason, as words
    assert "老李 · Online · 0/3" in body  # the agent choice shows status and load
    assert 'name="csrfmiddlewaretoken"' in body


@pytest.mark.django_db
def test_a_supervisor_assigns_an_escalated_order_by_hand(as_supervisor, escalated, supervisor):
    # given an agent with room
    agent = AgentFactory(display_name="老李")
    # when the supervisor assigns the order to them
    response = post_assign(as_supervisor, escalated, agent=agent.pk)
    # then the page redirected back (PRG) and says so; the agent owns the order
    assert response.redirect_chain == [("/dispatch/manual/", 302)]
    assert f"{escalated.tag} is now with 老李." in response.content.decode()
    a = Assignment.objects.get(order=escalated)
    assert (a.agent_id, a.state, a.manual, a.assigned_by_id) == (agent.pk, "accepted", True, supervisor.pk)
    escalated.refresh_from_db()
    assert escalated.owner_id == agent.user_id
    assert PoolEntry.objects.get(order=escalated).state == "assigned"
    after_messages = response.content.decode().split('<ul class="messages">', 1)[1].split("</ul>", 1)[1]
    assert escalated.tag not in after_messages, "no longer listed"


@pytest.mark.django_db
def test_an_agent_at_capacity_is_refused_unless_forced(as_supervisor, escalated):
    # given an agent whose one slot is taken by an accepted order
    agent = AgentFactory(display_name="老李", capacity=1)
    busy = ingest("Q-L2-BUSY")
    services.dispatch_tick()
    services.assignment_accept(assignment_id=Assignment.objects.get(order=busy).pk, agent=agent)

    # when the supervisor assigns the escalated order to them without force
    response = post_assign(as_supervisor, escalated, agent=agent.pk)

    # then the capacity error is shown and nothing was written
    body = response.content.decode()
    assert response.status_code == 200
    assert f"{escalated.tag} was not assigned: 老李 already has 1 of 1 items." in body
    assert 'role="alert"' in body
    assert not Assignment.objects.filter(order=escalated).exists()
    assert PoolEntry.objects.get(order=escalated).state == "escalated"

    # and with force the assignment goes through
    response = post_assign(as_supervisor, escalated, agent=agent.pk, force="on")
    assert f"{escalated.tag} is now with 老李." in response.content.decode()
    assert Assignment.objects.get(order=escalated).state == "accepted"


@pytest.mark.django_db
def test_return_to_automatic_matching_puts_the_order_back_in_the_pool(as_supervisor, escalated):
    response = as_supervisor.post(
        "/dispatch/manual/", {"order": escalated.pk, "action": "return"}, follow=True
    )

    assert f"{escalated.tag} is back in automatic matching." in response.content.decode()
    entry = PoolEntry.objects.get(order=escalated)
    assert (entry.state, entry.escalation_level, entry.wait_reason) == ("waiting", 0, "returned")


@pytest.mark.django_db
def test_assign_without_choosing_an_agent_is_refused(as_supervisor, escalated):
    response = post_assign(as_supervisor, escalated, agent="")

    assert "Choose the agent to assign it to." in response.content.decode()
    assert not Assignment.objects.filter(order=escalated).exists()
    assert PoolEntry.objects.get(order=escalated).state == "escalated"


@pytest.mark.django_db
def test_assign_to_an_agent_that_does_not_exist_is_refused(as_supervisor, escalated):
    response = post_assign(as_supervisor, escalated, agent=999999)

    assert f"{escalated.tag} was not assigned: Agent 999999 does not exist." in response.content.decode()
    assert not Assignment.objects.filter(order=escalated).exists()


@pytest.mark.django_db
def test_a_supervisor_cannot_assign_another_regions_order(browser_client, make_user, jd):
    # given an order of the south region, and a supervisor of the north only
    south = RegionFactory(code="south", provinces=["广东省"])
    north = RegionFactory(code="north", provinces=["北京市"])
    northerner = make_user("north-boss", "supervisor")
    north.supervisors.add(northerner)
    order = ingest("Q-L2-SOUTH")
    assert PoolEntry.objects.get(order=order).region_id == south.pk
    agent = AgentFactory()
    browser_client.force_login(northerner)

    # when the northern supervisor posts an assignment for it
    response = post_assign(browser_client, order, agent=agent.pk)

    # then it is refused as not theirs, and nothing was written
    assert f"Order {order.pk} is not in your dispatch pool." in response.content.decode()
    assert not Assignment.objects.filter(order=order).exists()


@pytest.mark.django_db
def test_manual_dispatch_posts_need_the_csrf_token(supervisor, escalated):
    # given a logged-in supervisor whose browser sends no CSRF token
    client = Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(supervisor)
    agent = AgentFactory()
    # when a form is posted without it
    response = client.post(
        "/dispatch/manual/", {"order": escalated.pk, "agent": agent.pk, "action": "assign"}
    )
    # then Django refuses it and nothing was written
    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert not Assignment.objects.filter(order=escalated).exists()


@pytest.mark.django_db
def test_the_manual_queue_costs_the_same_queries_for_one_row_or_many(as_supervisor, supervisor, jd):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def page_queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            response = as_supervisor.get("/dispatch/manual/")
        return response.content.decode().count("<tr data-entry="), len(queries)

    # given four escalated orders and a roster of three agents
    orders = [ingest(f"Q-N-{n}") for n in range(4)]
    services.dispatch_tick()
    for n in range(3):
        AgentFactory(display_name=f"agent-{n}")

    # when the page is loaded with four rows, and again after three went back to matching
    rows_many, many = page_queries()
    for order in orders[1:]:
        services.order_assign(order_id=order.pk, agent_id=None, actor=user_actor(supervisor))
    rows_one, one = page_queries()

    # then rows cost no queries of their own
    assert (rows_many, rows_one) == (4, 1)
    assert many == one, (many, one)


@pytest.mark.django_db
def test_a_supervisor_assigns_an_escalated_inquiry_by_hand(as_supervisor, jd):
    # given an inquiry no one can take (a skill nobody has), escalated to the manual queue
    SkillFactory(code="boiler", keywords=["锅炉"])
    inquiry = services.inquiry_create(
        channel=jd, account_id="u-9", customer_name="", text="锅炉漏水", vip=False
    )
    services.dispatch_tick()
    assert PoolEntry.objects.get(inquiry=inquiry).state == "escalated"
    agent = AgentFactory(display_name="老周")
    # when the supervisor assigns it from the manual queue
    listed = as_supervisor.get("/dispatch/manual/").content.decode()
    assert f'name="inquiry" value="{inquiry.pk}"' in listed
    response = as_supervisor.post(
        "/dispatch/manual/", {"inquiry": inquiry.pk, "agent": agent.pk, "action": "assign"}, follow=True
    )
    # then the agent holds it
    assert "is now with 老周" in response.content.decode()
    inquiry.refresh_from_db()
    assert (inquiry.state, inquiry.agent_id) == ("assigned", agent.pk)
    assert Assignment.objects.get(inquiry=inquiry).manual


@pytest.mark.django_db
def test_a_manual_post_naming_both_or_neither_subject_is_refused(as_supervisor, escalated):
    neither = as_supervisor.post("/dispatch/manual/", {"action": "return"}, follow=True)
    assert "Choose one order or one inquiry." in neither.content.decode()
    assert PoolEntry.objects.get(order=escalated).state == "escalated"
