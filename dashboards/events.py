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

from dashboards.groups import board_group

logger = logging.getLogger(__name__)

ORDERS_CHANGED = "orders.changed"


class OrdersChanged(TypedDict):
    type: str  # "orders.changed"
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


class _BoardSender:
    """One daemon thread per process with its own event loop; drains everything queued
    into as few group sends as possible."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="board-sender", daemon=True)
        self._thread.start()

    def submit(self, order_ids: list[int]) -> None:
        self._queue.put(list(order_ids))

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            ids = self._queue.get()
            while True:
                try:
                    ids.extend(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                loop.run_until_complete(self._send(list(dict.fromkeys(ids))))
            except Exception:  # Redis down: orders are stored; boards catch up on reconnect.
                logger.warning("board push failed for %d orders", len(ids), exc_info=True)

    @staticmethod
    async def _send(ids: list[int]) -> None:
        layer = get_channel_layer()
        for message in _messages(ids):
            await layer.group_send(board_group(), message)


_sender_lock = threading.Lock()
_sender_instance: tuple[int, _BoardSender] | None = None


def _sender() -> _BoardSender:
    """The process's sender; a forked child (a Celery prefork worker) starts its own."""
    global _sender_instance
    with _sender_lock:
        if _sender_instance is None or _sender_instance[0] != os.getpid():
            _sender_instance = (os.getpid(), _BoardSender())
        return _sender_instance[1]
