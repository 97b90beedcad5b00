"""Outbound webhooks: order events go to subscribed systems as signed JSON, written in the
same transaction as the events (an outbox), retried with backoff over hours with every attempt
recorded, replayable from admin; and nothing at all happens without a subscription."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboards.notify import Message, notifications_send, notify
from orders import outbound
from orders.actors import system_actor
from orders.models import Order, OrderEvent, OutboundAttempt, OutboundDelivery, WebhookSubscription
from orders.outbound import MAX_ATTEMPTS, RETRY_BACKOFF, outbound_deliver, outbound_deliver_due
from orders.services import order_ingest_batch, order_transition
from tests.factories import order_payload
from tests.fakes.receiver import FakeReceiver, verify_signature

pytestmark = pytest.mark.django_db

SECRET = "erp-signing-secret-0123456789"


@pytest.fixture(autouse=True)
def _fresh_subscription_cache():
    # The cache is per process and outlives a test's rolled-back rows.
    outbound.clear_subscription_cache()
    yield
    outbound.clear_subscription_cache()


@pytest.fixture
def erp():
    with FakeReceiver(secret=SECRET) as receiver:
        receiver.answer_always(200, {"received": True})
        yield receiver


@pytest.fixture
def order(api, jd) -> Order:
    response = api.post("/api/orders/", order_payload(), format="json")
    assert response.status_code == 201, response.json()
    return Order.objects.get(pk=response.json()["id"])


def _subscribe(base: str, *types: str) -> WebhookSubscription:
    return WebhookSubscription.objects.create(
        name="ERP", url=f"{base}/hooks/paidan", secret=SECRET, event_types=list(types)
    )


def _move(order: Order, to: str, capture) -> None:
    with capture(execute=True), transaction.atomic():
        order_transition(order_id=order.pk, to=to, actor=system_actor("test"), reason="picked up")


def test_subscriber_gets_signed_json_for_a_stage_change(erp, order, django_capture_on_commit_callbacks):
    subscription = _subscribe(erp.base, "order.stage_changed")
    _move(order, "picking", django_capture_on_commit_callbacks)

    [delivery] = OutboundDelivery.objects.all()
    assert (delivery.status, delivery.attempts, delivery.event_type) == (
        "delivered",
        1,
        "order.stage_changed",
    )
    [request] = erp.requests
    assert request.path == "/hooks/paidan"
    assert request.signature_ok is True
    assert verify_signature(SECRET, request.headers["x-paidan-signature"], request.body)
    assert request.headers["x-paidan-event"] == "order.stage_changed"
    assert request.headers["x-paidan-delivery"] == str(delivery.pk)
    assert request.headers["content-type"].startswith("application/json")
    event = OrderEvent.objects.get(order=order, kind="transition")
    order.refresh_from_db()
    assert request.json == {
        "id": f"evt_{event.pk}",
        "type": "order.stage_changed",
        "occurred_at": event.at.isoformat(),
        "order": {
            "id": order.pk,
            "tag": order.tag,
            "channel": "jd",
            "external_id": "JD100001",
            "stage": "picking",
            "owner": None,
            "due_at": order.due_at.isoformat(),
        },
        "event": {"from": "pending_review", "to": "picking", "reason": "picked up", "actor": "test"},
    }
    [attempt] = OutboundAttempt.objects.filter(delivery=delivery)
    assert (attempt.status_code, attempt.error) == (200, "")
    assert delivery.subscription == subscription


def test_a_tampered_body_does_not_verify():
    body = b'{"type":"order.stage_changed"}'
    header = outbound.sign(SECRET, body, int(timezone.now().timestamp()))
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body.replace(b"stage", b"stagE"))
    assert not verify_signature("another-secret-0123456789", header, body)


def test_unsubscribed_event_types_are_skipped_and_an_empty_list_means_all(
    erp, api, jd, django_capture_on_commit_callbacks
):
    moves_only = _subscribe(erp.base, "order.stage_changed")
    everything = _subscribe(erp.base)
    with django_capture_on_commit_callbacks(execute=True):
        order_id = api.post("/api/orders/", order_payload(), format="json").json()["id"]
    order = Order.objects.get(pk=order_id)
    _move(order, "picking", django_capture_on_commit_callbacks)

    assert sorted(moves_only.deliveries.values_list("event_type", flat=True)) == ["order.stage_changed"]
    types = set(everything.deliveries.values_list("event_type", flat=True))
    assert {"order.created", "order.stage_changed"} <= types
    assert len(erp.requests) == moves_only.deliveries.count() + everything.deliveries.count()
    assert all(r.signature_ok for r in erp.requests)


def test_a_batch_ingest_writes_one_delivery_per_order_in_the_same_insert(erp, jd):
    subscription = _subscribe(erp.base, "order.created")
    results = order_ingest_batch(
        payloads=[order_payload(external_id=f"JD2000{n}") for n in range(3)], actor=system_actor("import:1")
    )
    assert [r.status for r in results] == ["created"] * 3
    deliveries = subscription.deliveries.order_by("order_id")
    assert [d.order_id for d in deliveries] == sorted(r.id for r in results)
    assert {d.payload["order"]["external_id"] for d in deliveries} == {"JD20000", "JD20001", "JD20002"}
    assert {d.payload["event"]["actor"] for d in deliveries} == {"import:1"}


def test_failures_are_retried_with_backoff_every_attempt_recorded_then_given_up(
    erp, order, django_capture_on_commit_callbacks
):
    _subscribe(erp.base, "order.stage_changed")
    erp.answer_always(503, "maintenance window")
    _move(order, "picking", django_capture_on_commit_callbacks)  # the first attempt, after commit
    delivery = OutboundDelivery.objects.get()
    waits = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if attempt > 1:
            due = delivery.next_attempt_at
            assert outbound_deliver_due(now=due - timedelta(seconds=1)).claimed == 0
            tried_at = timezone.now()
            outbound_deliver_due(now=due)
        delivery.refresh_from_db()
        assert delivery.attempts == attempt
        assert delivery.last_error == "HTTP 503: maintenance window"
        if attempt < MAX_ATTEMPTS:
            assert delivery.status == "pending"
            if attempt > 1:
                waits.append(delivery.next_attempt_at - tried_at)
        else:
            assert (delivery.status, delivery.next_attempt_at) == ("failed", None)
    for wait, expected in zip(waits, RETRY_BACKOFF[1:], strict=True):
        assert expected <= wait <= expected + timedelta(seconds=5)
    attempts = list(delivery.attempt_log.values_list("status_code", "error"))
    assert attempts == [(503, "HTTP 503: maintenance window")] * MAX_ATTEMPTS
    assert len(erp.requests) == MAX_ATTEMPTS
    # The same delivery id on every retry: the receiver can dedupe on it.
    assert {r.headers["x-paidan-delivery"] for r in erp.requests} == {str(delivery.pk)}
    assert outbound_deliver_due(now=timezone.now() + timedelta(days=3)).claimed == 0


def test_the_first_retry_waits_a_minute_and_an_unreachable_receiver_is_recorded(order):
    with FakeReceiver() as gone:
        base = gone.base
    _subscribe(base, "order.stage_changed")  # the server is shut: connection refused
    order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
    delivery = OutboundDelivery.objects.get()
    before = timezone.now()
    report = outbound_deliver(ids=[delivery.pk])
    assert report.retrying == 1
    delivery.refresh_from_db()
    assert before + RETRY_BACKOFF[0] <= delivery.next_attempt_at <= timezone.now() + RETRY_BACKOFF[0]
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None and attempt.error.startswith("ConnectionError")
    assert delivery.last_error == attempt.error


def test_no_subscription_writes_no_delivery_and_costs_no_query(order, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
    assert not OutboundDelivery.objects.exists()
    # With the (empty) subscription list cached, the hook on every audit write runs no SQL.
    event = OrderEvent.objects.filter(order=order).last()
    with CaptureQueriesContext(connection) as queries:
        assert outbound.events_written([event]) == []
    assert queries.captured_queries == []


def test_a_rolled_back_transaction_writes_and_sends_nothing(erp, order, django_capture_on_commit_callbacks):
    _subscribe(erp.base)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
        assert OutboundDelivery.objects.count() == 1  # written with the event …
        raise RuntimeError("the rest of the change failed")
    assert not OutboundDelivery.objects.exists()  # … and gone with it
    assert callbacks == [] and erp.requests == []
    order.refresh_from_db()
    assert order.stage == "pending_review"


def test_a_new_subscription_takes_effect_at_once_in_this_process(erp, order):
    assert outbound.active_subscriptions() == ()  # cached: none
    _subscribe(erp.base, "order.stage_changed")  # saving drops the cached list
    order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
    assert OutboundDelivery.objects.count() == 1


def test_a_switched_off_subscription_gets_nothing_and_its_pending_deliveries_are_given_up(erp, order):
    subscription = _subscribe(erp.base, "order.stage_changed")
    order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
    subscription.is_active = False
    subscription.save()
    order_transition(order_id=order.pk, to="shipping", actor=system_actor("test"))
    [delivery] = OutboundDelivery.objects.all()  # none for the second move
    outbound_deliver(ids=[delivery.pk])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("failed", "The subscription is switched off.")
    assert erp.requests == [] and not delivery.attempt_log.exists()


def test_a_notification_about_an_order_is_an_order_notification_event(erp, order):
    _subscribe(erp.base, "order.notification")
    [row] = notify(
        [
            Message(
                template="risk_quarantine",
                channel="sms",
                target="+8613510001000",
                payload={"order": {"tag": order.tag}, "score": 88},
                order_id=order.pk,
            )
        ]
    )
    notifications_send(ids=[row.pk])
    [delivery] = OutboundDelivery.objects.all()
    assert delivery.event_type == "order.notification"
    assert delivery.payload["event"]["actor"] == "notify:sms"
    assert "+86135****1000" in delivery.payload["event"]["reason"]


# --- Admin --------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(make_user):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_replay_from_admin_sends_again_with_new_attempts_even_when_delivered(
    admin_client, erp, order, django_capture_on_commit_callbacks
):
    _subscribe(erp.base, "order.stage_changed")
    _move(order, "picking", django_capture_on_commit_callbacks)
    delivered = OutboundDelivery.objects.get()
    assert delivered.status == "delivered"
    erp.answer_always(500, "down")
    _move(order, "shipping", django_capture_on_commit_callbacks)
    broken = OutboundDelivery.objects.exclude(pk=delivered.pk).get()
    OutboundDelivery.objects.filter(pk=broken.pk).update(status="failed", next_attempt_at=None)
    erp.answer_always(200, {"received": True})

    response = admin_client.post(
        "/admin/orders/outbounddelivery/",
        {"action": "replay", "index": 0, "_selected_action": [delivered.pk, broken.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "Replayed 2: 2 delivered, 0 failed (see their attempts)."
    ]
    delivered.refresh_from_db()
    broken.refresh_from_db()
    assert (delivered.status, delivered.attempts) == ("delivered", 2)
    assert (broken.status, broken.attempts) == ("delivered", 2)
    assert list(broken.attempt_log.values_list("status_code", flat=True)) == [500, 200]
    assert [r.headers["x-paidan-delivery"] for r in erp.requests] == [
        str(delivered.pk),
        str(broken.pk),
        str(delivered.pk),
        str(broken.pk),
    ]
    assert all(r.signature_ok for r in erp.requests)
    page = admin_client.get(f"/admin/orders/outbounddelivery/{broken.pk}/change/")
    assert page.status_code == 200 and "HTTP 500: down" in page.content.decode()


def test_subscription_admin_event_types_and_a_write_only_secret(admin_client, erp):
    response = admin_client.post(
        "/admin/orders/webhooksubscription/add/",
        {
            "name": "WMS",
            "url": erp.base + "/wms",
            "event_types": ["order.created", "order.stage_changed"],
            "secret": "short",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["secret"] == ["A signing secret needs at least 16 characters; this one has 5."]
    assert not WebhookSubscription.objects.exists()

    response = admin_client.post(
        "/admin/orders/webhooksubscription/add/",
        {
            "name": "WMS",
            "url": erp.base + "/wms",
            "event_types": ["order.created", "order.stage_changed"],
            "secret": "",
            "is_active": "on",
        },
        follow=True,
    )
    subscription = WebhookSubscription.objects.get()
    assert subscription.event_types == ["order.created", "order.stage_changed"]
    assert len(subscription.secret) >= 40
    # Generated, and shown once.
    assert any(subscription.secret in str(m) for m in response.context["messages"])
    change = admin_client.get(f"/admin/orders/webhooksubscription/{subscription.pk}/change/").content.decode()
    assert subscription.secret not in change and subscription.secret[-4:] in change

    response = admin_client.post(
        f"/admin/orders/webhooksubscription/{subscription.pk}/change/",
        {
            "name": "WMS",
            "url": erp.base + "/wms",
            "event_types": ["order.assigned"],
            "secret": "",
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    kept = WebhookSubscription.objects.get()
    assert kept.secret == subscription.secret and kept.event_types == ["order.assigned"]

    response = admin_client.post(
        f"/admin/orders/webhooksubscription/{subscription.pk}/change/",
        {"name": "WMS", "url": "ftp://example.com/x", "event_types": ["order.teleported"], "is_active": "on"},
    )
    errors = response.context["adminform"].form.errors
    assert "order.teleported" in errors["event_types"][0]
    assert "url" in errors
    assert WebhookSubscription.objects.get().event_types == ["order.assigned"]
    assert admin_client.get("/admin/orders/webhooksubscription/").status_code == 200
