"""The live feeds obey the role matrix: every role × each socket (/ws/board/, /ws/agent/) is
accepted with exactly the channel-layer groups its reader may hear, or closed with 4401 (not
logged in) or 4403 (no board, no agent profile); with every socket open at once, a regional
supervisor hears nothing of another region's orders or alerts and an agent nothing of another
agent's work; and the handshake is refused unless its Origin is one of ALLOWED_HOSTS.

Through Channels' WebsocketCommunicator on config.asgi.application, the stack daphne serves
(origin validator, session auth, router). Transactional: the consumers read the session and
the roles through database_sync_to_async, which closes the connection a test transaction
would hold open, and the events go out after real commits."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from config.asgi import application
from dashboards.alerts import alert_raise
from dashboards.consumers import CLOSE_NO_BOARD, CLOSE_NOT_AN_AGENT, CLOSE_UNAUTHENTICATED
from dashboards.events import (
    AGENT_CHANGED,
    ALERTS_RAISED,
    NOTIFICATIONS_CREATED,
    ORDERS_CHANGED,
    publish_notifications_created,
)
from dashboards.groups import agent_group, board_group, region_board_group, unregioned_board_group, user_group
from dashboards.models import Alert
from dispatch.services import order_assign
from orders.services import order_transition
from tests.test_role_matrix import (
    ROLES,
    SYSTEM,
    World,
    build_world,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(jd, make_user, settings) -> World:
    return build_world(jd, make_user, settings)


ORIGIN = (b"origin", b"http://testserver")
HZ = "浙江省杭州市西湖区文三路478号"  # the east region
BJ = "北京市朝阳区建国路88号"  # no region covers it

# socket → what each role gets, in ROLES order: a close code, or the groups it joins besides
# its own person's group (user-<id>). ALL: board-all; SOUTH / EAST: that region's board and
# the orders no region covers; AGENT: that reader's own agent group.
ALL, SOUTH, EAST, AGENT = "all", "south", "east", "agent"
# fmt: off
SOCKETS = {
    #              anon  agnt   oagt   ware  cs    risk   osup  sup    admn
    "/ws/board/": (4401, 4403,  4403,  ALL,  ALL,  ALL,   EAST, SOUTH, ALL),
    "/ws/agent/": (4401, AGENT, AGENT, 4403, 4403, AGENT, 4403, 4403,  4403),
}
# fmt: on


def cookie(world: World, role: str) -> list[tuple[bytes, bytes]]:
    if role == "anonymous":
        return []
    client = Client()
    client.force_login(world.users[role])
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def joined_groups() -> set[str]:
    """Groups of the in-memory layer (tests/conftest.py) that have a member now."""
    return {group for group, members in get_channel_layer().groups.items() if members}


def handshake(path: str, headers: list) -> tuple[bool, int | None, set[str]]:
    """Connect, note the groups the socket joined, disconnect."""

    async def attempt():
        before = joined_groups()
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await communicator.connect()
        groups = joined_groups() - before
        await communicator.disconnect()
        return connected, code, groups

    return async_to_sync(attempt)()


def expected_groups(world: World, role: str, symbol: str) -> set[str]:
    own = {user_group(world.users[role].pk)}
    if symbol == ALL:
        return own | {board_group()}
    if symbol in (SOUTH, EAST):
        region = world.south if symbol == SOUTH else world.east
        return own | {region_board_group(region.pk), unregioned_board_group()}
    return own | {agent_group(world.agents[role].pk)}


def test_every_role_gets_each_socket_with_its_own_groups_or_the_close_code_the_matrix_says(world):
    wrong = {}
    for path, cells in SOCKETS.items():
        for role, cell in zip(ROLES, cells, strict=True):
            connected, code, groups = handshake(path, [ORIGIN, *cookie(world, role)])
            got = groups if connected else code
            want = expected_groups(world, role, cell) if isinstance(cell, str) else cell
            if got != want:
                wrong[(path, role)] = (got, want)
    assert not wrong, f"(socket, role): (got, want) {wrong}"
    assert (CLOSE_UNAUTHENTICATED, CLOSE_NO_BOARD, CLOSE_NOT_AN_AGENT) == (4401, 4403, 4403)


ORIGINS = {
    b"http://testserver": True,
    b"http://evil.example": False,
    b"http://testserver.evil.example": False,  # a look-alike prefix is another site
    b"null": False,  # a sandboxed iframe or a file:// page
    # Browsers always send Origin on a websocket handshake: one without it is not our page,
    # and nothing but our pages uses these sockets.
    None: False,
}


def test_a_handshake_is_accepted_only_from_an_allowed_origin(world):
    # The Origin is what stops another site's page from opening a socket with our session
    # cookie (cross-site websocket hijacking): the session alone does not do.
    got = {}
    for origin in ORIGINS:
        for path, role in (("/ws/board/", "supervisor"), ("/ws/agent/", "agent")):
            headers = cookie(world, role) + ([(b"origin", origin)] if origin else [])
            connected, _code, groups = handshake(path, headers)
            assert bool(groups) is connected, "a refused handshake joins no group"
            got[(origin, path)] = connected
    assert got == {(origin, path): ok for origin, ok in ORIGINS.items() for path in SOCKETS}


def test_with_every_socket_open_each_reader_hears_only_of_what_is_theirs(world):
    # given every socket that may open, open at once
    south, east, nowhere = world.order(), world.order(address=HZ), world.order(address=BJ)
    offered = world.order(owner=None)
    agent = world.agents["agent"]

    def happen() -> dict[str, int]:
        order_transition(order_id=south.pk, to="picking", actor=SYSTEM)
        order_transition(order_id=east.pk, to="picking", actor=SYSTEM)
        order_transition(order_id=nowhere.pk, to="picking", actor=SYSTEM)
        order_assign(order_id=offered.pk, agent_id=agent.pk, actor=SYSTEM)
        now = timezone.now()
        south_alert = alert_raise(kind=Alert.Kind.SLA_L3, level=3, key="s", message="s", now=now,
                                  region=world.south)  # fmt: skip
        east_alert = alert_raise(kind=Alert.Kind.SLA_L3, level=3, key="e", message="e", now=now,
                                 region=world.east)  # fmt: skip
        publish_notifications_created({world.users["agent"].pk: [71], world.users["supervisor"].pk: [72]})
        return {"south_alert": south_alert.pk, "east_alert": east_alert.pk}

    sockets = {
        (path, role): [ORIGIN, *cookie(world, role)]
        for path, cells in SOCKETS.items()
        for role, cell in zip(ROLES, cells, strict=True)
        if isinstance(cell, str)
    }

    async def scenario():
        open_ = {}
        for (path, role), headers in sockets.items():
            communicator = WebsocketCommunicator(application, path, headers=headers)
            connected, code = await communicator.connect()
            assert connected, (path, role, code)
            await communicator.receive_json_from(timeout=2)  # hello
            open_[(path, role)] = communicator
        alerts = await sync_to_async(happen)()
        heard = {}
        for key, communicator in open_.items():
            messages = []
            while not await communicator.receive_nothing(timeout=0.1, interval=0.01):
                messages.append(await communicator.receive_json_from(timeout=1))
            await communicator.disconnect()
            heard[key] = {(m["type"], i) for m in messages for i in m.get("ids", [None])}
        return alerts, heard

    alerts, heard = async_to_sync(scenario)()

    # then each hears exactly its own: the ids of the orders and alerts it may see, and only
    # its own person's notifications and its own agent's changes
    every_order = {(ORDERS_CHANGED, o.pk) for o in (south, east, nowhere, offered)}
    south_orders = {(ORDERS_CHANGED, o.pk) for o in (south, nowhere, offered)}
    east_orders = {(ORDERS_CHANGED, o.pk) for o in (east, nowhere)}
    south_alert, east_alert = (ALERTS_RAISED, alerts["south_alert"]), (ALERTS_RAISED, alerts["east_alert"])
    assert heard == {
        ("/ws/board/", "warehouse"): every_order,
        ("/ws/board/", "customer_service"): every_order,
        ("/ws/board/", "risk_reviewer"): every_order,  # alerts are for supervisors and admins
        ("/ws/board/", "other_supervisor"): east_orders | {east_alert},
        ("/ws/board/", "supervisor"): south_orders | {south_alert, (NOTIFICATIONS_CREATED, 72)},
        ("/ws/board/", "admin"): every_order | {south_alert, east_alert},
        ("/ws/agent/", "agent"): {(AGENT_CHANGED, None), (NOTIFICATIONS_CREATED, 71)},
        ("/ws/agent/", "other_agent"): set(),
        ("/ws/agent/", "risk_reviewer"): set(),
    }
