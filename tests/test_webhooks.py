"""Signed webhooks in: signature, timestamp tolerance, replay protection, field mapping."""

import json
import threading
import time

import pytest
from django.db import connections
from django.test import Client

from orders.models import Order, OrderEvent, WebhookDelivery
from orders.webhooks import sign
from tests.factories import ChannelFactory, order_payload

SECRET = "s3cret-hook-key"


def _post(client, channel, body: bytes, *, ts=None, event_id="evt-1", secret=SECRET, signature=None):
    if ts is None:
        ts = int(time.time())
    elif isinstance(ts, int) and abs(ts) < 10_000:
        ts = int(time.time()) + ts  # an offset from now
    ts = str(ts)
    headers = {
        "HTTP_X_PAIDAN_TIMESTAMP": ts,
        "HTTP_X_PAIDAN_EVENT_ID": event_id,
        "HTTP_ACCEPT_LANGUAGE": "en",
    }
    headers["HTTP_X_PAIDAN_SIGNATURE"] = signature if signature is not None else sign(secret, ts, body)
    return client.post(f"/hooks/{channel}/", body, content_type="application/json", **headers)


def _body(**overrides) -> bytes:
    payload = order_payload(**overrides)
    payload.pop("channel")
    return json.dumps(payload, ensure_ascii=False).encode()


def _nothing_stored():
    return (
        Order.objects.count() == 0
        and WebhookDelivery.objects.count() == 0
        and OrderEvent.objects.count() == 0
    )


@pytest.mark.django_db
def test_signed_webhook_creates_the_order(client, jd):
    response = _post(client, "jd", _body())
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "created"
    order = Order.objects.get()
    assert order.channel == jd and order.events.get().actor == "webhook:jd"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"signature": "sha256=" + "0" * 64}, "bad_signature"),
        ({"secret": "wrong-secret"}, "bad_signature"),
        ({"signature": ""}, "signature_missing"),
        ({"ts": -360}, "stale_timestamp"),
        ({"ts": 360}, "stale_timestamp"),  # a minute past the window: a slow machine cannot bring it back
        ({"ts": "yesterday"}, "bad_timestamp"),
    ],
)
def test_bad_missing_and_stale_signatures_are_401(client, jd, kwargs, code):
    response = _post(client, "jd", _body(), **kwargs)
    assert response.status_code == 401
    assert response.json()["code"] == code
    assert _nothing_stored()


@pytest.mark.django_db
def test_body_changed_after_signing_is_refused(client, jd):
    ts = str(int(time.time()))
    signature = sign(SECRET, ts, _body())
    response = client.post(
        "/hooks/jd/", _body(amount="1.00"), content_type="application/json",
        HTTP_X_PAIDAN_TIMESTAMP=ts, HTTP_X_PAIDAN_EVENT_ID="e", HTTP_X_PAIDAN_SIGNATURE=signature,
    )  # fmt: skip
    assert response.status_code == 401 and _nothing_stored()


@pytest.mark.django_db
def test_replayed_event_id_is_200_and_changes_nothing(client, jd):
    _post(client, "jd", _body(note="first"), event_id="evt-7")
    events_before = OrderEvent.objects.count()
    replay = _post(
        client, "jd", _body(note="replayed", source_updated_at="2026-11-21T00:00:00+08:00"), event_id="evt-7"
    )
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert Order.objects.get().note == "first"
    assert OrderEvent.objects.count() == events_before


@pytest.mark.django_db
def test_unknown_channel_channel_without_secret_and_missing_event_id(client, jd):
    ChannelFactory(code="nosecret", webhook_secret="")
    assert _post(client, "nowhere", _body()).status_code == 404
    assert _post(client, "nosecret", _body()).json()["code"] == "no_secret"
    missing = _post(client, "jd", _body(), event_id="")
    assert missing.status_code == 400 and missing.json()["code"] == "event_id_missing"
    assert _nothing_stored()


@pytest.mark.django_db
def test_signed_but_malformed_or_invalid_body_is_400_and_can_be_resent(client, jd):
    malformed = _post(client, "jd", b'{"external_id": ', event_id="evt-9")
    assert malformed.status_code == 400 and malformed.json()["code"] == "malformed_json"
    invalid = _post(client, "jd", _body(amount="12.345"), event_id="evt-9")
    assert invalid.status_code == 400
    assert invalid.json()["errors"]["amount"] == ["Ensure that there are no more than 2 decimal places."]
    assert _nothing_stored()
    fixed = _post(client, "jd", _body(), event_id="evt-9")  # the same event id, corrected
    assert fixed.status_code == 200 and fixed.json()["status"] == "created"


@pytest.mark.django_db
def test_channel_field_mapping_turns_their_json_into_ours(client):
    ChannelFactory(
        code="douyin",
        tag_prefix="DY",
        field_mapping={
            "external_id": "order_sn",
            "customer.name": "buyer.nick",
            "customer.phone": "buyer.mobile",
            "address": "receiver.full_address",
            "amount": "pay_amount",
            "source_updated_at": "update_time",
            "items": {
                "path": "sku_list",
                "fields": {"sku": "sku_id", "name": "title", "qty": "num", "price": "unit_price"},
            },
        },
    )
    theirs = {
        "order_sn": "DY998",
        "buyer": {"nick": "赵敏", "mobile": "18612345678"},
        "receiver": {"full_address": "江苏省南京市鼓楼区中山路1号"},
        "pay_amount": "88.00",
        "update_time": 1763600000,
        "sku_list": [{"sku_id": "S1", "title": "毛巾", "num": 2, "unit_price": "44.00"}],
    }
    response = _post(client, "douyin", json.dumps(theirs, ensure_ascii=False).encode())
    assert response.status_code == 200, response.json()
    order = Order.objects.get()
    assert (order.external_id, order.customer_name, order.city) == ("DY998", "赵敏", "南京市")
    assert order.items == [{"sku": "S1", "name": "毛巾", "qty": 2, "price": "44.00"}]
    assert order.tag.startswith("DY-")


@pytest.mark.django_db(transaction=True)
def test_same_event_delivered_fifty_times_concurrently_is_one_order(jd):
    body = _body()
    ts = str(int(time.time()))
    signature = sign(SECRET, ts, body)
    start = threading.Barrier(50)
    statuses: list[str] = []

    def deliver():
        try:
            start.wait()
            response = Client().post(
                "/hooks/jd/", body, content_type="application/json",
                HTTP_X_PAIDAN_TIMESTAMP=ts, HTTP_X_PAIDAN_EVENT_ID="evt-burst", HTTP_X_PAIDAN_SIGNATURE=signature,
            )  # fmt: skip
            statuses.append(f"{response.status_code}:{response.json()['status']}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(statuses) == 50
    assert statuses.count("200:created") == 1
    assert statuses.count("200:duplicate") == 49
    assert Order.objects.count() == 1 and OrderEvent.objects.filter(kind="ingested").count() == 1


@pytest.mark.django_db(transaction=True)
def test_different_events_for_one_order_concurrently_stay_one_order(jd):
    """Fifty distinct event ids for the same order race on the order's unique key."""
    start = threading.Barrier(20)
    statuses: list[str] = []

    def deliver(i):
        body = _body(source_updated_at=f"2026-11-20T10:00:{i:02d}+08:00")
        ts = str(int(time.time()))
        try:
            start.wait()
            response = Client().post(
                "/hooks/jd/", body, content_type="application/json",
                HTTP_X_PAIDAN_TIMESTAMP=ts, HTTP_X_PAIDAN_EVENT_ID=f"evt-{i}",
                HTTP_X_PAIDAN_SIGNATURE=sign(SECRET, ts, body),
            )  # fmt: skip
            statuses.append(response.json()["status"])
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(statuses) == 20 and statuses.count("created") == 1
    order = Order.objects.get()
    # Timestamp wins whatever the arrival order: the newest delivery's time is stored.
    assert order.source_updated_at.second == 19


@pytest.mark.django_db
def test_ten_megabyte_webhook_body_is_413_and_nothing_stored(client, jd):
    body = _body(note="x" * (10 * 1024 * 1024))
    response = _post(client, "jd", body)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert _nothing_stored()
