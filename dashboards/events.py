"""Live events pushed to browsers. Types are namespaced and payloads typed; sends happen
after commit. Messages may be lost (channels-redis drops past capacity, a process may die
with a queue), so clients re-fetch what they show after a reconnect."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from typing import TypedDict

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from dashboards.groups import agent_group, board_group

logger = logging.getLogger(__name__)

ORDERS_CHANGED = "orders.changed"
AGENT_CHANGED = "agent.changed"
ALERTS_RAISED = "alerts.raised"


class OrdersChanged(TypedDict):
    type: str  # "orders.changed"
    ids: list[int]


class AgentChanged(TypedDict):
    """An agent's offers, orders or inquiries changed: their queue page re-fetches."""

    type: str  # "agent.changed"


class AlertsRaised(TypedDict):
    """New red-flag alerts: boards show them as toasts and in the alert list."""

    type: str  # "alerts.raised"
    ids: list[int]


# A burst of 10,000 ingested orders becomes a handful of messages, not 10,000.
MAX_IDS_PER_MESSAGE = 500


def _messages(order_ids: list[int]) -> list[OrdersChanged]:
    return [
        {"type": ORDERS_CHANGED, "ids": order_ids[start : start + MAX_IDS_PER_MESSAGE]}
        for start in range(0, len(order_ids), MAX_IDS_PER_MESSAGE)
    ]


def publish_orders_changed(order_ids: list[int]) -> None:
    """Tell every open board which orders changed. Never raises: a lost push only delays
    the board until its next re-fetch.

    On Redis the send is handed to a background sender so the request does not wait on it
    (~4 ms a send) and ids that pile up during a burst go out together. The in-memory layer
    of the embedded server is sent to directly: its queues belong to daphne's event loop."""
    layer = get_channel_layer()
    if layer is None or not order_ids:
        return
    if isinstance(layer, InMemoryChannelLayer):
        try:
            for message in _messages(order_ids):
                async_to_sync(layer.group_send)(board_group(), message)
        except Exception:
            logger.warning("board push failed for %d orders", len(order_ids), exc_info=True)
        return
    _sender().submit(order_ids)


def publish_agent_changed(agent_ids: list[int]) -> None:
    """Tell each agent's open queue pages to re-fetch. Never raises (see above)."""
    layer = get_channel_layer()
    if layer is None or not agent_ids:
        return
    if isinstance(layer, InMemoryChannelLayer):
        try:
            for agent_id in agent_ids:
                async_to_sync(layer.group_send)(agent_group(agent_id), AgentChanged(type=AGENT_CHANGED))
        except Exception:
            logger.warning("agent push failed for %d agents", len(agent_ids), exc_info=True)
        return
    _sender().submit_agents(agent_ids)


def publish_alerts_raised(alert_ids: list[int]) -> None:
    """Tell every open board about new alerts. Never raises (see above)."""
    layer = get_channel_layer()
    if layer is None or not alert_ids:
        return
    if isinstance(layer, InMemoryChannelLayer):
        try:
            async_to_sync(layer.group_send)(
                board_group(), AlertsRaised(type=ALERTS_RAISED, ids=list(alert_ids))
            )
        except Exception:
            logger.warning("alert push failed for %d alerts", len(alert_ids), exc_info=True)
        return
    _sender().submit_alerts(alert_ids)


class _BoardSender:
    """One daemon thread per process with its own event loop; drains everything queued
    into as few group sends as possible."""

    def __init__(self) -> None:
        # ("orders", ids), ("agents", ids) or ("alerts", ids)
        self._queue: queue.SimpleQueue[tuple[str, list[int]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="board-sender", daemon=True)
        self._thread.start()

    def submit(self, order_ids: list[int]) -> None:
        self._queue.put(("orders", list(order_ids)))

    def submit_agents(self, agent_ids: list[int]) -> None:
        self._queue.put(("agents", list(agent_ids)))

    def submit_alerts(self, alert_ids: list[int]) -> None:
        self._queue.put(("alerts", list(alert_ids)))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            pending = {"orders": [], "agents": [], "alerts": []}
            kind, ids = self._queue.get()
            pending[kind].extend(ids)
            while True:
                try:
                    kind, ids = self._queue.get_nowait()
                except queue.Empty:
                    break
                pending[kind].extend(ids)
            orders = list(dict.fromkeys(pending["orders"]))
            agents = list(dict.fromkeys(pending["agents"]))
            alerts = list(dict.fromkeys(pending["alerts"]))
            try:
                loop.run_until_complete(self._send(orders, agents, alerts))
            except Exception:  # Redis down: orders are stored; pages catch up on reconnect.
                logger.warning(
                    "push failed for %d orders, %d agents", len(orders), len(agents), exc_info=True
                )

    @staticmethod
    async def _send(order_ids: list[int], agent_ids: list[int], alert_ids: list[int]) -> None:
        layer = get_channel_layer()
        if alert_ids:
            await layer.group_send(board_group(), AlertsRaised(type=ALERTS_RAISED, ids=alert_ids))
        if order_ids:
            for message in _messages(order_ids):
                await layer.group_send(board_group(), message)
        for agent_id in agent_ids:
            await layer.group_send(agent_group(agent_id), AgentChanged(type=AGENT_CHANGED))


_sender_lock = threading.Lock()
_sender_instance: tuple[int, _BoardSender] | None = None


def _sender() -> _BoardSender:
    """The process's sender; a forked child (a Celery prefork worker) starts its own."""
    global _sender_instance
    with _sender_lock:
        if _sender_instance is None or _sender_instance[0] != os.getpid():
            _sender_instance = (os.getpid(), _BoardSender())
        return _sender_instance[1]
