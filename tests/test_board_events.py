"""The board push: sent after commit, batched, typed, and never fatal to a write."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from dashboards.events import MAX_IDS_PER_MESSAGE, ORDERS_CHANGED, publish_orders_changed
from dashboards.groups import board_group
from orders.models import Order
from tests.factories import order_payload

pytestmark = pytest.mark.django_db


def _listen():
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(board_group(), channel)
    return layer, channel


def test_ingest_pushes_orders_changed_after_commit(api, jd, django_capture_on_commit_callbacks):
    layer, channel = _listen()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        body = api.post("/api/orders/", order_payload(), format="json").json()
    assert not layer.channels.get(channel), "nothing may be sent before the commit"
    for callback in callbacks:
        callback()
    message = async_to_sync(layer.receive)(channel)
    assert message == {"type": ORDERS_CHANGED, "ids": [body["id"]]}


def test_transition_pushes_too(api, jd, django_capture_on_commit_callbacks):
    order_id = api.post("/api/orders/", order_payload(), format="json").json()["id"]
    layer, channel = _listen()
    with django_capture_on_commit_callbacks(execute=True):
        api.post(f"/api/orders/{order_id}/transition/", {"to": "picking"}, format="json")
    assert async_to_sync(layer.receive)(channel)["ids"] == [order_id]


def test_a_large_batch_is_a_few_messages_not_one_per_order(api, jd, django_capture_on_commit_callbacks):
    layer, channel = _listen()
    items = [order_payload(external_id=f"X{i}") for i in range(MAX_IDS_PER_MESSAGE + 10)]
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/orders/batch/", {"orders": items}, format="json")
    first = async_to_sync(layer.receive)(channel)
    second = async_to_sync(layer.receive)(channel)
    assert len(first["ids"]) == MAX_IDS_PER_MESSAGE and len(second["ids"]) == 10
    assert set(first["ids"]) | set(second["ids"]) == set(Order.objects.values_list("pk", flat=True))


def test_a_failing_channel_layer_never_fails_the_write(settings, api, jd, django_capture_on_commit_callbacks):
    # Redis down: the push fails, the order is still stored and the response is 201.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.2}]},
        }
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/orders/", order_payload(), format="json")
    channel_layers.backends.clear()
    assert response.status_code == 201
    assert Order.objects.count() == 1
    publish_orders_changed([])  # nothing to send is a no-op


def test_on_redis_the_background_sender_delivers_every_id(settings):
    """The request hands ids over and returns; the sender coalesces what piles up."""
    import os
    import time

    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": None}]},
        }
    }
    channel_layers.backends.clear()
    try:
        layer = get_channel_layer()
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(board_group(), channel)
        # Ids no order of another test has: the process-wide sender may still be flushing an
        # earlier test's events (order ids, alerts) into the same board group on the same Redis.
        base = 10**9
        for start in range(base, base + 1200, 3):
            publish_orders_changed([start, start + 1, start + 2])
        seen: set[int] = set()
        deadline = time.monotonic() + 5
        while len(seen) < 1200 and time.monotonic() < deadline:
            message = async_to_sync(layer.receive)(channel)
            if message["type"] != ORDERS_CHANGED:
                continue  # another test's alert, flushed late
            assert len(message["ids"]) <= MAX_IDS_PER_MESSAGE
            seen.update(i for i in message["ids"] if i >= base)
        assert seen == set(range(base, base + 1200))
        async_to_sync(layer.group_discard)(board_group(), channel)
    finally:
        channel_layers.backends.clear()
