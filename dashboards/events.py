"""Live events pushed to browsers. Types are namespaced and payloads typed; sends happen
after commit. Messages may be lost (channels-redis drops past capacity), so clients
re-fetch what they show after a reconnect."""

from __future__ import annotations

import logging
from typing import TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from dashboards.groups import board_group

logger = logging.getLogger(__name__)

ORDERS_CHANGED = "orders.changed"


class OrdersChanged(TypedDict):
    type: str  # "orders.changed"
    ids: list[int]


# A burst of 10,000 ingested orders becomes a handful of messages, not 10,000.
MAX_IDS_PER_MESSAGE = 500


def publish_orders_changed(order_ids: list[int]) -> None:
    """Tell every open board which orders changed. Never raises: a lost push only delays
    the board until its next re-fetch."""
    layer = get_channel_layer()
    if layer is None or not order_ids:
        return
    try:
        for start in range(0, len(order_ids), MAX_IDS_PER_MESSAGE):
            event: OrdersChanged = {
                "type": ORDERS_CHANGED,
                "ids": order_ids[start : start + MAX_IDS_PER_MESSAGE],
            }
            async_to_sync(layer.group_send)(board_group(), event)
    except Exception:  # Redis down: the order is stored; the board catches up on reconnect.
        logger.warning("board push failed for %d orders", len(order_ids), exc_info=True)
