"""The live feeds through Channels' WebsocketCommunicator and the whole ASGI stack (origin
validation, session auth): who may open the board socket, which groups each viewer joins,
and one test per event type (orders.changed, alerts.raised, alerts.acknowledged,
notifications.created, agent.changed), each sent after commit by the real publisher."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from config.asgi import application
from dashboards.alerts import alert_raise
from dashboards.board_services import alert_acknowledge
from dashboards.consumers import CLOSE_NO_BOARD, CLOSE_UNAUTHENTICATED
from dashboards.events import (
    AGENT_CHANGED,
    ALERTS_ACKNOWLEDGED,
    ALERTS_RAISED,
    EVENT_TYPES,
    NOTIFICATIONS_CREATED,
    ORDERS_CHANGED,
    order_routes,
    publish_agent_changed,
    publish_notifications_created,
)
from dashboards.groups import board_group, region_board_group, unregioned_board_group
from dashboards.models import Alert
from orders.actors import system_actor
from orders.models import Order
from orders.services import order_ingest_batch, order_transition
from orders.states import Role
from tests.factories import AgentFactory, ChannelFactory, RegionFactory, UserFactory, order_payload

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")
SZ = "广东省深圳市南山区科技园南区8栋1203"
HZ = "浙江省杭州市西湖区文三路478号"
BJ = "北京市朝阳区建国路88号"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


@pytest.fixture
def world():
    # A transactional test starts from an empty database: the role groups too.
    for role in Role:
        if role != Role.SYSTEM:
            Group.objects.get_or_create(name=role)
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    south = RegionFactory(code="south", provinces=["广东省"])
    east = RegionFactory(code="east", provinces=["浙江省"])
    south_boss = UserFactory(username="south_boss", roles=["supervisor"])
    south.supervisors.add(south_boss)
    results = order_ingest_batch(
        payloads=[
            order_payload(external_id=ext, address=address, customer={"account_id": f"a-{ext}"})
            for ext, address in (("C-SZ", SZ), ("C-HZ", HZ), ("C-BJ", BJ))
        ],
        actor=system_actor("test"),
    )
    sz, hz, bj = (Order.objects.get(pk=r.id) for r in results)
    return {
        "south": south,
        "east": east,
        "south_boss": south_boss,
        "chief": UserFactory(username="chief", roles=["supervisor"]),
        "cs": UserFactory(username="cs", roles=["customer_service"]),
        "sz": sz,
        "hz": hz,
        "bj": bj,
    }


def connect(path: str, headers) -> tuple[bool, int | None]:
    async def attempt():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    return async_to_sync(attempt)()


def listen(user, action, *, path: str = "/ws/board/", quiet: float = 0.3) -> tuple[dict, list[dict]]:
    """Open `user`'s socket, run `action` (sync, in a thread, as a request or a task would),
    and return the greeting and every message that arrives until `quiet` seconds pass."""

    headers = [ORIGIN, cookie(user)]

    async def scenario():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await communicator.connect()
        assert connected, code
        hello = await communicator.receive_json_from(timeout=2)
        await sync_to_async(action)()
        messages = []
        while not await communicator.receive_nothing(timeout=quiet):
            messages.append(await communicator.receive_json_from(timeout=1))
        await communicator.disconnect()
        return hello, messages

    return async_to_sync(scenario)()


def transition(order: Order, to: str):
    return lambda: order_transition(order_id=order.pk, to=to, actor=system_actor("test"))


# --- Who may open the board -----------------------------------------------------------------
def test_an_anonymous_board_socket_is_closed_with_4401():
    assert connect("/ws/board/", [ORIGIN]) == (False, CLOSE_UNAUTHENTICATED)


def test_agents_and_accounts_without_a_board_role_are_refused_with_4403(world):
    agent = AgentFactory(user__username="xiaowang")
    assert connect("/ws/board/", [ORIGIN, cookie(agent.user)]) == (False, CLOSE_NO_BOARD)
    nobody = UserFactory(username="nobody")
    assert connect("/ws/board/", [ORIGIN, cookie(nobody)]) == (False, CLOSE_NO_BOARD)


def test_a_board_socket_from_a_foreign_origin_is_refused(world):
    connected, _code = connect("/ws/board/", [(b"origin", b"http://evil.example"), cookie(world["chief"])])
    assert connected is False


def test_the_board_greets_and_answers_pings(world):
    headers = [ORIGIN, cookie(world["cs"])]

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/board/", headers=headers)
        assert (await communicator.connect())[0]
        hello = await communicator.receive_json_from(timeout=2)
        await communicator.send_json_to({"type": "ping"})
        pong = await communicator.receive_json_from(timeout=2)
        await communicator.send_json_to({"type": "something else"})  # ignored, not fatal
        quiet = await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()
        return hello, pong, quiet

    assert async_to_sync(scenario)() == ({"type": "hello", "user": "cs"}, {"type": "pong"}, True)


# --- Where an event goes ---------------------------------------------------------------------
def test_an_orders_ids_go_to_everyone_who_sees_all_and_to_the_groups_of_its_region(world):
    both = RegionFactory(code="guangdong-north", provinces=["广东省"])  # two regions list 广东
    routes = {group: ids for group, _type, ids in order_routes([world["sz"].pk, world["bj"].pk, 999999])}
    assert routes == {
        board_group(): [world["sz"].pk, world["bj"].pk, 999999],
        region_board_group(world["south"].pk): [world["sz"].pk],
        region_board_group(both.pk): [world["sz"].pk],
        unregioned_board_group(): [world["bj"].pk],
    }


# --- orders.changed ----------------------------------------------------------------------------
def test_orders_changed_reaches_the_boards_that_may_see_the_order_and_no_other(world):
    # the supervisor of the south hears of a south order, and of one no region covers
    _hello, heard = listen(world["south_boss"], transition(world["sz"], "picking"))
    assert heard == [{"type": ORDERS_CHANGED, "ids": [world["sz"].pk]}]
    _hello, heard = listen(world["south_boss"], transition(world["bj"], "picking"))
    assert heard == [{"type": ORDERS_CHANGED, "ids": [world["bj"].pk]}]
    # but not even the id of an east order
    _hello, heard = listen(world["south_boss"], transition(world["hz"], "picking"))
    assert heard == []
    # while the all-seeing boards hear of every one
    _hello, heard = listen(world["chief"], transition(world["hz"], "shipping"))
    assert heard == [{"type": ORDERS_CHANGED, "ids": [world["hz"].pk]}]
    _hello, heard = listen(world["cs"], transition(world["hz"], "done"))
    assert heard == [{"type": ORDERS_CHANGED, "ids": [world["hz"].pk]}]


# --- alerts.raised ------------------------------------------------------------------------------
def raise_alert(key: str, region) -> callable:
    def run() -> None:
        alert_raise(kind=Alert.Kind.SLA_L3, level=3, key=key, message=key, now=timezone.now(), region=region)

    return run


def test_alerts_raised_reaches_the_supervisors_of_its_region_only(world):
    _hello, heard = listen(world["south_boss"], raise_alert("south-1", world["south"]))
    assert heard == [{"type": ALERTS_RAISED, "ids": [Alert.objects.get(dedupe_key="south-1").pk]}]
    _hello, heard = listen(world["south_boss"], raise_alert("nowhere-1", None))
    assert heard == [{"type": ALERTS_RAISED, "ids": [Alert.objects.get(dedupe_key="nowhere-1").pk]}]
    _hello, heard = listen(world["south_boss"], raise_alert("east-1", world["east"]))
    assert heard == []
    _hello, heard = listen(world["chief"], raise_alert("east-2", world["east"]))
    assert heard == [{"type": ALERTS_RAISED, "ids": [Alert.objects.get(dedupe_key="east-2").pk]}]
    # customer service shares the all-orders group but alerts are not theirs
    _hello, heard = listen(world["cs"], raise_alert("east-3", world["east"]))
    assert heard == []


# --- alerts.acknowledged -------------------------------------------------------------------------
def test_alerts_acknowledged_tells_the_other_supervisors_boards(world):
    raise_alert("ack-1", world["south"])()
    alert = Alert.objects.get(dedupe_key="ack-1")
    _hello, heard = listen(
        world["chief"], lambda: alert_acknowledge(alert_id=alert.pk, user=world["south_boss"])
    )
    assert heard == [{"type": ALERTS_ACKNOWLEDGED, "ids": [alert.pk]}]


# --- notifications.created -------------------------------------------------------------------------
def test_notifications_created_reaches_only_its_persons_pages(world):
    _hello, heard = listen(world["chief"], lambda: publish_notifications_created({world["chief"].pk: [7, 8]}))
    assert heard == [{"type": NOTIFICATIONS_CREATED, "ids": [7, 8]}]
    _hello, heard = listen(world["chief"], lambda: publish_notifications_created({world["cs"].pk: [9]}))
    assert heard == []


def test_an_agents_queue_feed_gets_their_notifications_too(world):
    agent = AgentFactory(user__username="xiaoli")
    _hello, heard = listen(
        agent.user, lambda: publish_notifications_created({agent.user.pk: [3]}), path="/ws/agent/"
    )
    assert heard == [{"type": NOTIFICATIONS_CREATED, "ids": [3]}]


# --- agent.changed -----------------------------------------------------------------------------------
def test_agent_changed_reaches_that_agents_queue_feed_only(world):
    agent = AgentFactory(user__username="xiaozhao")
    other = AgentFactory(user__username="xiaochen")
    hello, heard = listen(agent.user, lambda: publish_agent_changed([agent.pk]), path="/ws/agent/")
    assert hello == {"type": "hello", "agent": agent.pk}
    assert heard == [{"type": AGENT_CHANGED}]
    _hello, heard = listen(agent.user, lambda: publish_agent_changed([other.pk]), path="/ws/agent/")
    assert heard == []


def test_every_event_type_has_a_handler_on_both_feeds():
    from dashboards.consumers import AgentConsumer, BoardConsumer

    for event_type in EVENT_TYPES:
        handler = event_type.replace(".", "_")
        assert callable(getattr(BoardConsumer, handler)), event_type
        assert callable(getattr(AgentConsumer, handler)), event_type
