"""Live events pushed to browsers. Types are namespaced and payloads typed; sends happen
after commit (callers use transaction.on_commit). Events carry ids only: a page re-reads what
they name through the visibility-checked API. Messages may be lost (channels-redis drops
group messages past a channel's capacity, a process may die with a queue), so pages re-fetch
what they show after a reconnect and now and then.

Each event goes to the board groups of the people who may see its subject (dashboards.groups):
every board event to `board-all`, an order's to the groups of the regions whose provinces hold
its delivery province (else `board-unregioned`), an alert's to its region's group (else
`board-unregioned`)."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import TypedDict

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from dashboards.groups import (
    agent_group,
    board_group,
    region_board_group,
    unregioned_board_group,
    user_group,
)

logger = logging.getLogger(__name__)

ORDERS_CHANGED = "orders.changed"
AGENT_CHANGED = "agent.changed"
ALERTS_RAISED = "alerts.raised"
ALERTS_ACKNOWLEDGED = "alerts.acknowledged"
NOTIFICATIONS_CREATED = "notifications.created"

# Every type a consumer may be sent; each has a handler on both consumers.
EVENT_TYPES = (ORDERS_CHANGED, AGENT_CHANGED, ALERTS_RAISED, ALERTS_ACKNOWLEDGED, NOTIFICATIONS_CREATED)


class OrdersChanged(TypedDict):
    """Orders were created or changed: boards re-read those cards (and their counts)."""

    type: str  # "orders.changed"
    ids: list[int]


class AgentChanged(TypedDict):
    """An agent's offers, orders or inquiries changed: their queue page re-fetches."""

    type: str  # "agent.changed"


class AlertsRaised(TypedDict):
    """New red-flag alerts: boards show them as toasts and in the alert list."""

    type: str  # "alerts.raised"
    ids: list[int]


class AlertsAcknowledged(TypedDict):
    """Alerts a supervisor acknowledged: other boards drop them from their open list."""

    type: str  # "alerts.acknowledged"
    ids: list[int]


class NotificationsCreated(TypedDict):
    """New in-app notifications for one person: their open page updates its inbox badge."""

    type: str  # "notifications.created"
    ids: list[int]


# A burst of 10,000 ingested orders becomes a handful of messages, not 10,000.
MAX_IDS_PER_MESSAGE = 500

# (group, event type, ids); ids is empty for agent.changed.
Send = tuple[str, str, list[int]]


def _messages(event_type: str, ids: list[int]) -> list[dict]:
    if event_type == AGENT_CHANGED:
        return [AgentChanged(type=AGENT_CHANGED)]
    return [
        {"type": event_type, "ids": ids[start : start + MAX_IDS_PER_MESSAGE]}
        for start in range(0, len(ids), MAX_IDS_PER_MESSAGE)
    ]


# --- Who hears of what --------------------------------------------------------------------
def _regions_by_province() -> dict[str, list[int]]:
    from agents.models import Region

    table: dict[str, list[int]] = defaultdict(list)
    for region_id, provinces in Region.objects.values_list("id", "provinces"):
        for name in provinces or []:
            table[str(name).strip()].append(region_id)
    return table


def order_routes(order_ids: list[int]) -> list[Send]:
    """The groups to tell about these orders: two small queries, run after commit (by the
    background sender, or the committing thread on the in-memory layer)."""
    from orders.models import Order

    provinces = dict(Order.objects.filter(pk__in=order_ids).values_list("id", "province"))
    regions = _regions_by_province() if provinces else {}
    by_group: dict[str, list[int]] = defaultdict(list)
    for order_id in order_ids:
        if order_id not in provinces:
            continue  # not (or no longer) stored: only the all-seeing boards hear of it
        region_ids = regions.get((provinces[order_id] or "").strip())
        if region_ids:
            for region_id in region_ids:
                by_group[region_board_group(region_id)].append(order_id)
        else:
            by_group[unregioned_board_group()].append(order_id)
    return [(board_group(), ORDERS_CHANGED, list(order_ids))] + [
        (group, ORDERS_CHANGED, ids) for group, ids in by_group.items()
    ]


def alert_routes(event_type: str, alert_ids: list[int]) -> list[Send]:
    from dashboards.models import Alert

    by_group: dict[str, list[int]] = defaultdict(list)
    for alert_id, region_id in Alert.objects.filter(pk__in=alert_ids).values_list("id", "region_id"):
        group = unregioned_board_group() if region_id is None else region_board_group(region_id)
        by_group[group].append(alert_id)
    return [(board_group(), event_type, list(alert_ids))] + [
        (group, event_type, sorted(ids)) for group, ids in by_group.items()
    ]


# --- Publishing (after commit) --------------------------------------------------------------
# What a publisher hands over: orders or alerts by id (routed to groups by the database when
# sent), or sends already addressed (agents', persons' groups).
_ORDERS = "orders"
_ADDRESSED = "addressed"


def publish_orders_changed(order_ids: list[int]) -> None:
    """Tell the boards that may see these orders that they changed. Never raises: a lost
    push only delays a board until its next re-fetch.

    On Redis the ids are handed to a background sender and the caller returns at once; the
    sender reads which regions they belong to and sends, so ids that pile up during a burst
    go out as one routing query and one message per group. The in-memory layer of the
    embedded server is sent to directly: its queues belong to daphne's event loop."""
    order_ids = list(dict.fromkeys(order_ids))
    if order_ids:
        _publish(_ORDERS, order_ids)


def publish_agent_changed(agent_ids: list[int]) -> None:
    """Tell each agent's open queue pages to re-fetch. Never raises (see above)."""
    if agent_ids:
        _publish(_ADDRESSED, [(agent_group(a), AGENT_CHANGED, []) for a in dict.fromkeys(agent_ids)])


def publish_alerts_raised(alert_ids: list[int]) -> None:
    """Tell the boards of the alerts' regions about new alerts. Never raises (see above)."""
    alert_ids = list(dict.fromkeys(alert_ids))
    if alert_ids:
        _publish(ALERTS_RAISED, alert_ids)


def publish_alerts_acknowledged(alert_ids: list[int]) -> None:
    """Tell the boards of the alerts' regions that someone acknowledged them."""
    alert_ids = list(dict.fromkeys(alert_ids))
    if alert_ids:
        _publish(ALERTS_ACKNOWLEDGED, alert_ids)


def publish_notifications_created(by_user: dict[int, list[int]]) -> None:
    """Tell each person's open pages about their new in-app notifications. Never raises."""
    sends = [
        (user_group(user_id), NOTIFICATIONS_CREATED, list(ids)) for user_id, ids in by_user.items() if ids
    ]
    if sends:
        _publish(_ADDRESSED, sends)


def _publish(kind: str, payload: list) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if not isinstance(layer, InMemoryChannelLayer):
        _sender().submit(kind, payload)
        return
    try:
        async_to_sync(_send_all)(layer, _route({kind: payload}))
    except Exception:
        logger.warning("live push failed (%s)", kind, exc_info=True)


def _route(pending: dict[str, list]) -> list[Send]:
    """Addressed sends for what was handed over; alerts first, so a red flag never waits
    behind a burst of card updates."""
    sends: list[Send] = []
    for event_type in (ALERTS_RAISED, ALERTS_ACKNOWLEDGED):
        if pending.get(event_type):
            sends += _routed(
                lambda t=event_type: alert_routes(t, pending[t]), event_type, pending[event_type]
            )
    if pending.get(_ORDERS):
        sends += _routed(lambda: order_routes(pending[_ORDERS]), ORDERS_CHANGED, pending[_ORDERS])
    merged: dict[tuple[str, str], dict[int, None]] = {}
    for group, event_type, ids in pending.get(_ADDRESSED, []):
        merged.setdefault((group, event_type), {}).update(dict.fromkeys(ids))
    sends += [(group, event_type, list(ids)) for (group, event_type), ids in merged.items()]
    return sends


def _routed(route, event_type: str, ids: list[int]) -> list[Send]:
    try:
        return route()
    except Exception:
        # The database could not say whose boards: the all-seeing ones still hear of it, and
        # the others catch up on their next re-fetch.
        logger.warning("could not route %s; telling %s only", event_type, board_group(), exc_info=True)
        return [(board_group(), event_type, ids)]


async def _send_all(layer, sends: Iterable[Send]) -> None:
    for group, event_type, ids in sends:
        for message in _messages(event_type, ids):
            await layer.group_send(group, message)


class _BoardSender:
    """One daemon thread per process with its own event loop. It drains everything queued,
    routes it (two or three small queries for the whole batch, on the thread's own database
    connection, closed again so it holds none between bursts) and sends one message per
    group and event type."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[str, list]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="board-sender", daemon=True)
        self._thread.start()

    def submit(self, kind: str, payload: list) -> None:
        self._queue.put((kind, list(payload)))

    def _run(self) -> None:
        from django.db import connections

        loop = asyncio.new_event_loop()
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            pending: dict[str, list] = defaultdict(list)
            for kind, payload in items:
                pending[kind].extend(payload)
            for kind in (_ORDERS, ALERTS_RAISED, ALERTS_ACKNOWLEDGED):
                if pending.get(kind):
                    pending[kind] = list(dict.fromkeys(pending[kind]))
            try:
                try:
                    _own_connection()
                    sends = _route(pending)
                finally:
                    connections.close_all()
                loop.run_until_complete(_send_all(get_channel_layer(), sends))
            except Exception:  # Redis down: the rows are stored; pages catch up on reconnect.
                logger.warning("live push failed (%s)", ", ".join(pending), exc_info=True)


def _own_connection() -> None:
    """Give the sender thread a database connection of its own, outside the process's pool,
    from the settings as they are now (`bench` repoints them at its database). Celery's
    prefork worker closes the pool at the end of every task (celery #10554), just when a
    round's commit has woken the sender: routing then failed with "pool has already been
    opened/closed" and regional boards never heard of the worker's offers
    (tests/chaos/test_burst.py)."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.utils import load_backend

    configured = connections.settings[DEFAULT_DB_ALIAS]
    own = {**configured, "OPTIONS": {k: v for k, v in configured.get("OPTIONS", {}).items() if k != "pool"}}
    connections[DEFAULT_DB_ALIAS] = load_backend(own["ENGINE"]).DatabaseWrapper(own, DEFAULT_DB_ALIAS)


_sender_lock = threading.Lock()
_sender_instance: tuple[int, _BoardSender] | None = None


def _sender() -> _BoardSender:
    """The process's sender; a forked child (a Celery prefork worker) starts its own."""
    global _sender_instance
    with _sender_lock:
        if _sender_instance is None or _sender_instance[0] != os.getpid():
            _sender_instance = (os.getpid(), _BoardSender())
        return _sender_instance[1]
