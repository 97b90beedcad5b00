"""Notifications: every channel's backend against a local fake server (WeCom robot, SMS
gateway) or Django's mail outbox, retries with backoff until given up, the audit line about
the order, claims that keep two sweeps from sending one message twice, the admin, and the
in-app inbox API."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from dashboards import notify as notify_module
from dashboards.defaults import install_defaults
from dashboards.groups import user_group
from dashboards.models import Notification, NotificationTemplate
from dashboards.notify import (
    MAX_ATTEMPTS,
    RETRY_BACKOFF,
    Message,
    notifications_send,
    notifications_send_due,
    notify,
)
from dashboards.tasks import send_due_notifications_task
from orders.actors import system_actor
from orders.models import Order, OrderEvent
from orders.services import order_transition
from tests.factories import order_payload
from tests.fakes.receiver import FakeReceiver
from tests.test_pages_browser import browser, log_in, off_the_loop, page_for  # noqa: F401 - browser, page_for are fixtures

pytestmark = pytest.mark.django_db

PHONE = "+8613510001000"


@pytest.fixture
def robot():
    with FakeReceiver() as receiver:
        yield receiver


@pytest.fixture
def order(api, jd) -> Order:
    response = api.post("/api/orders/", order_payload(), format="json")
    assert response.status_code == 201, response.json()
    return Order.objects.get(pk=response.json()["id"])


def _payload(order: Order | None = None, **extra) -> dict:
    tag = order.tag if order else "JD-20261122-001"
    return {
        "order": {"id": order.pk if order else 1, "tag": tag, "stage_label": "拣货中", "url": "/orders/1/"},
        "owner": "张三",
        "backup": "李四",
        "minutes_over": 25,
        "score": 90,
        **extra,
    }


def _one(**kwargs) -> Notification:
    rows = notify([Message(**kwargs)])
    assert len(rows) == 1
    return Notification.objects.get(pk=rows[0].pk)


# --- Each backend sends ------------------------------------------------------------------------
def test_wecom_robot_gets_text_json_with_mentions_and_the_row_is_sent(robot):
    row = _one(
        template="sla_overdue",
        channel="wecom",
        target=robot.url,
        payload=_payload(mentioned_mobile_list=[PHONE, "@all"]),
    )
    report = notifications_send(ids=[row.pk])
    assert (report.sent, report.retrying, report.failed) == (1, 0, 0)
    [request] = robot.requests
    assert request.path == "/cgi-bin/webhook/send?key=robot-key-1234"
    assert request.json == {
        "msgtype": "text",
        "text": {
            "content": "【超时提醒】JD-20261122-001 在「拣货中」已超时 25 分钟，负责人：张三。",
            # WeCom wants the national number for mentions.
            "mentioned_mobile_list": ["13510001000", "@all"],
        },
    }
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error, row.next_attempt_at) == ("sent", 1, "", None)
    assert row.sent_at is not None


def test_wecom_errcode_is_a_failure_with_its_errmsg(robot):
    robot.wecom_error_next(93000, "invalid webhook url")
    row = _one(template="sla_overdue", channel="wecom", target=robot.url, payload=_payload())
    before = timezone.now()
    report = notifications_send(ids=[row.pk])
    assert (report.sent, report.retrying) == (0, 1)
    row.refresh_from_db()
    assert row.status == "pending" and row.attempts == 1
    assert row.last_error == "WeCom robot refused the message: errcode 93000: invalid webhook url"
    assert before + RETRY_BACKOFF[0] <= row.next_attempt_at <= timezone.now() + RETRY_BACKOFF[0]


def test_email_goes_through_djangos_mail_backend():
    row = _one(template="sla_supervisor", channel="email", target="boss@example.com", payload=_payload())
    notifications_send(ids=[row.pk])
    [message] = mail.outbox
    assert message.to == ["boss@example.com"]
    assert message.subject == "【超时升级 L3】订单 JD-20261122-001 仍未处理"
    assert "已超时 25 分钟" in message.body and "查看：/orders/1/" in message.body
    row.refresh_from_db()
    assert row.status == "sent"


def test_sms_logging_backend_logs_the_text_with_the_phone_masked(caplog):
    row = _one(template="sla_supervisor", channel="sms", target=PHONE, payload=_payload())
    with caplog.at_level(logging.INFO, logger="dashboards.backends"):
        notifications_send(ids=[row.pk])
    [record] = [r for r in caplog.records if r.name == "dashboards.backends"]
    assert record.getMessage() == (
        "SMS to +86135****1000: 【派单】订单JD-20261122-001超时25分钟仍未处理，请主管介入。"
    )
    row.refresh_from_db()
    assert row.status == "sent"


def test_sms_http_gateway_posts_json_with_the_bearer_token(settings):
    with FakeReceiver() as gateway:
        settings.SMS_BACKEND = "dashboards.backends.HttpGatewaySmsBackend"
        settings.SMS_GATEWAY_URL = f"{gateway.base}/sms/send"
        settings.SMS_GATEWAY_TOKEN = "gw-token-1"
        ok = _one(template="sla_supervisor", channel="sms", target=PHONE, payload=_payload())
        refused = _one(template="risk_quarantine", channel="sms", target=PHONE, payload=_payload())
        notifications_send(ids=[ok.pk])
        gateway.answer_next(503, "overloaded, try later")
        notifications_send(ids=[refused.pk])
    first, second = gateway.requests
    assert first.path == "/sms/send"
    assert first.headers["authorization"] == "Bearer gw-token-1"
    assert first.json == {"to": PHONE, "text": "【派单】订单JD-20261122-001超时25分钟仍未处理，请主管介入。"}
    assert second.json == {"to": PHONE, "text": "【派单】订单JD-20261122-001风险分90，已拦截待核实。"}
    ok.refresh_from_db()
    refused.refresh_from_db()
    assert ok.status == "sent"
    assert (refused.status, refused.attempts) == ("pending", 1)
    assert refused.last_error == "SMS gateway answered HTTP 503: overloaded, try later"


def test_sms_http_gateway_without_a_url_fails_with_a_clear_error(settings):
    settings.SMS_BACKEND = "dashboards.backends.HttpGatewaySmsBackend"
    settings.SMS_GATEWAY_URL = ""
    row = _one(template="sla_supervisor", channel="sms", target=PHONE, payload=_payload())
    notifications_send(ids=[row.pk])
    row.refresh_from_db()
    assert (row.status, row.last_error) == ("pending", "SMS_GATEWAY_URL is not set.")


def test_in_app_is_marked_sent_and_pushed_to_the_persons_pages(make_user):
    user = make_user("agent7", "agent")
    layer = get_channel_layer()
    async_to_sync(layer.group_add)(user_group(user.pk), "page-of-agent7")
    row = _one(template="sla_backup", channel="in_app", user=user, payload=_payload())
    notifications_send(ids=[row.pk])
    message = async_to_sync(layer.receive)("page-of-agent7")
    assert message == {"type": "notifications.created", "ids": [row.pk]}
    row.refresh_from_db()
    assert (row.status, row.subject) == ("sent", "订单 JD-20261122-001 转给你处理")


# --- Retries, giving up, the audit trail ---------------------------------------------------------
def test_failure_is_retried_with_backoff_and_given_up_after_max_attempts_with_the_error_kept(robot, order):
    robot.answer_always(502, "bad gateway")
    row = _one(
        template="sla_overdue", channel="wecom", target=robot.url, payload=_payload(order), order_id=order.pk
    )
    waits = []
    due = row.next_attempt_at
    for attempt in range(1, MAX_ATTEMPTS + 1):
        # Not due a moment before its time: nothing is sent.
        assert notifications_send_due(now=due - timedelta(seconds=1)).claimed == 0
        tried_at = timezone.now()
        report = notifications_send_due(now=due)
        row.refresh_from_db()
        assert row.attempts == attempt
        assert row.last_error == "WeCom robot answered HTTP 502: bad gateway"
        if attempt < MAX_ATTEMPTS:
            assert (report.retrying, row.status) == (1, "pending")
            waits.append(row.next_attempt_at - tried_at)
            due = row.next_attempt_at
            # Retries are not audited: the trail gets one line when it is over.
            assert not OrderEvent.objects.filter(order=order, kind="notification").exists()
        else:
            assert (report.failed, row.status, row.next_attempt_at) == (1, "failed", None)
    assert len(robot.requests) == MAX_ATTEMPTS
    # Each wait is the schedule's (measured from just before the attempt started).
    for wait, expected in zip(waits, RETRY_BACKOFF, strict=True):
        assert expected <= wait <= expected + timedelta(seconds=5)
    [event] = OrderEvent.objects.filter(order=order, kind="notification")
    assert event.actor == "notify:wecom"
    assert "robo****" in event.reason and "robot-key-1234" not in event.reason
    assert "bad gateway" in event.reason
    assert event.changes == {
        "notification": row.pk,
        "template": "sla_overdue",
        "channel": "wecom",
        "status": "failed",
        "attempts": MAX_ATTEMPTS,
    }
    # A given-up row is never picked again.
    assert notifications_send_due(now=timezone.now() + timedelta(days=2)).claimed == 0


def test_sent_message_about_an_order_is_audited_with_the_phone_masked(order):
    row = _one(
        template="sla_supervisor", channel="sms", target=PHONE, payload=_payload(order), order_id=order.pk
    )
    notifications_send(ids=[row.pk])
    [event] = OrderEvent.objects.filter(order=order, kind="notification")
    assert event.actor == "notify:sms"
    assert "+86135****1000" in event.reason and PHONE not in event.reason
    assert event.changes["status"] == "sent" and event.changes["attempts"] == 1


def test_a_failing_backend_never_raises_into_an_order_transition(
    settings, order, django_capture_on_commit_callbacks
):
    settings.SMS_BACKEND = "tests.test_notifications.ExplodingSmsBackend"
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        moved = order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
        notify(
            [
                Message(
                    template="sla_supervisor",
                    channel="sms",
                    target=PHONE,
                    payload=_payload(order),
                    order_id=order.pk,
                )
            ]
        )
    assert moved.stage == "picking"
    order.refresh_from_db()
    assert order.stage == "picking"
    row = Notification.objects.get(order=order)
    # The task ran after commit (eager here), the backend blew up, the row took the blame.
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.last_error == "RuntimeError: the SMS provider's SDK crashed"


def test_a_broker_outage_leaves_the_row_pending_and_the_sweep_sends_it(
    monkeypatch, robot, order, django_capture_on_commit_callbacks
):
    from dashboards import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(tasks.send_notifications_task, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        order_transition(order_id=order.pk, to="picking", actor=system_actor("test"))
        notify([Message(template="sla_overdue", channel="wecom", target=robot.url, payload=_payload(order))])
    row = Notification.objects.get()
    assert (row.status, robot.requests) == ("pending", [])
    monkeypatch.undo()
    send_due_notifications_task()
    row.refresh_from_db()
    assert row.status == "sent" and len(robot.requests) == 1


class ExplodingSmsBackend:
    def send(self, notification) -> None:
        raise RuntimeError("the SMS provider's SDK crashed")


def test_dedupe_key_makes_a_second_notify_a_no_op(robot):
    message = Message(
        template="sla_overdue",
        channel="wecom",
        target=robot.url,
        payload=_payload(),
        dedupe_key="sla:1:L1:wecom",
    )
    assert len(notify([message])) == 1
    assert notify([message]) == []
    assert Notification.objects.filter(dedupe_key="sla:1:L1:wecom").count() == 1


def test_rows_in_a_rolled_back_transaction_are_never_sent(robot, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        notify([Message(template="sla_overdue", channel="wecom", target=robot.url, payload=_payload())])
        raise RuntimeError("the order change failed")
    assert callbacks == [] and not Notification.objects.exists() and robot.requests == []


# --- Two sweeps at once ----------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_never_send_a_message_twice(monkeypatch):
    # The suite runs on PostgreSQL (make test); on anything else this must fail, not pass by
    # skipping, since SKIP LOCKED is what it proves.
    assert connection.vendor == "postgresql", "run the tests on PostgreSQL (DATABASE_URL)"
    install_defaults(NotificationTemplate)
    # The after-commit tasks are lost (say the broker was down): only the sweeps send.
    monkeypatch.setattr(notify_module, "_deliver_after_commit", lambda ids: None)
    count = 45
    with FakeReceiver(delay=0.02) as robot:
        for n in range(count):
            notify(
                [
                    Message(
                        template="sla_overdue",
                        channel="wecom",
                        target=robot.url,
                        payload=_payload(minutes_over=n),
                    )
                ]
            )
        start = threading.Barrier(2)
        reports, errors = [], []

        def sweep() -> None:
            try:
                start.wait(timeout=10)
                reports.append(notifications_send_due())
            except Exception as exc:  # reported below; a thread's exception is otherwise lost
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    contents = [r.json["text"]["content"] for r in robot.requests]
    assert len(contents) == count and len(set(contents)) == count
    # Both sweeps really ran at once and shared the work: a run where one did everything
    # would not have exercised the claims.
    assert len(reports) == 2 and all(r.sent > 0 for r in reports), reports
    assert sum(r.sent for r in reports) == count
    assert set(Notification.objects.values_list("status", "attempts")) == {("sent", 1)}


# --- Admin --------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(make_user):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_admin_refuses_a_template_that_does_not_compile_and_stores_nothing(admin_client):
    before = NotificationTemplate.objects.count()
    response = admin_client.post(
        "/admin/dashboards/notificationtemplate/add/",
        {
            "code": "broken",
            "channel": "sms",
            "subject": "{{ order.tag|no_such_filter }}",
            "body": "{% if %}x",
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["subject"][0].startswith("This is not a valid template:")
    assert errors["body"][0].startswith("This is not a valid template:")
    assert NotificationTemplate.objects.count() == before


def test_admin_refuses_a_template_that_fails_when_rendered(admin_client):
    response = admin_client.post(
        "/admin/dashboards/notificationtemplate/add/",
        {
            "code": "broken",
            "channel": "sms",
            "subject": "",
            "body": "{% url 'no-such-page' %}",
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    [error] = response.context["adminform"].form.errors["body"]
    assert error.startswith("This template fails when rendered: Reverse for 'no-such-page' not found.")
    assert not NotificationTemplate.objects.filter(code="broken").exists()


def test_a_template_broken_at_render_time_skips_the_message_and_never_raises(robot):
    NotificationTemplate.objects.filter(code="sla_overdue", channel="wecom").update(body="{% url 'gone' %}")
    assert (
        notify([Message(template="sla_overdue", channel="wecom", target=robot.url, payload=_payload())]) == []
    )
    assert not Notification.objects.exists()


def test_admin_saves_an_edited_template_and_previews_it_with_a_sample_payload(admin_client):
    template = NotificationTemplate.objects.get(code="sla_overdue", channel="wecom")
    response = admin_client.post(
        f"/admin/dashboards/notificationtemplate/{template.pk}/change/",
        {
            "code": "sla_overdue",
            "channel": "wecom",
            "subject": "",
            "body": "{{ order.tag }} 超时了",
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    page = admin_client.get(f"/admin/dashboards/notificationtemplate/{template.pk}/change/")
    assert "JD-20261122-007 超时了" in page.content.decode()


def test_admin_sends_a_given_up_notification_again_keeping_its_attempts(
    admin_client, robot, django_capture_on_commit_callbacks
):
    row = _one(template="sla_overdue", channel="wecom", target=robot.url, payload=_payload())
    sent = _one(template="sla_backup", channel="wecom", target=robot.url, payload=_payload())
    Notification.objects.filter(pk=row.pk).update(
        status="failed", attempts=MAX_ATTEMPTS, last_error="HTTP 502"
    )
    Notification.objects.filter(pk=sent.pk).update(status="sent", attempts=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/dashboards/notification/",
            {"action": "send_again", "index": 0, "_selected_action": [row.pk, sent.pk]},
            follow=True,
        )
    assert response.status_code == 200
    notes = [str(m) for m in response.context["messages"]]
    assert notes == [
        "1 notification will be sent again.",
        "1 not given up (pending or sent): left as they are.",
    ]
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", MAX_ATTEMPTS + 1)
    assert len(robot.requests) == 1  # the sent one was not sent again
    listing = admin_client.get("/admin/dashboards/notification/?status=sent&channel=wecom")
    assert listing.status_code == 200 and "robo****" in listing.content.decode()


# --- The inbox API ---------------------------------------------------------------------------------
def test_inbox_lists_only_my_in_app_notifications_with_the_unread_count(api_as, make_user, order):
    me = api_as("cs1", "customer_service")
    mine = make_user("cs1")
    other = make_user("cs2", "customer_service")
    first = _one(
        template="sla_overdue", channel="in_app", user=mine, payload=_payload(order), order_id=order.pk
    )
    second = _one(template="sla_backup", channel="in_app", user=mine, payload=_payload(order))
    _one(template="sla_overdue", channel="in_app", user=other, payload=_payload(order))
    _one(
        template="sla_supervisor",
        channel="email",
        user=mine,
        target="cs1@example.com",
        payload=_payload(order),
    )
    Notification.objects.filter(pk=second.pk).update(read_at=timezone.now())

    body = me.get("/api/notifications/").json()
    assert (body["count"], body["unread"]) == (2, 1)
    assert [n["id"] for n in body["results"]] == [second.pk, first.pk]
    item = body["results"][1]
    assert item["order"] == order.pk and item["order_tag"] == order.tag
    assert item["url"] == f"/orders/{order.pk}/" and item["is_read"] is False
    assert item["subject"] == f"订单 {order.tag} 已超时"

    unread = me.get("/api/notifications/?unread=true").json()
    assert [n["id"] for n in unread["results"]] == [first.pk] and unread["unread"] == 1
    read = me.get("/api/notifications/?unread=false").json()
    assert [n["id"] for n in read["results"]] == [second.pk]


def test_inbox_bad_filter_is_400_saying_what_was_wrong(api_as):
    response = api_as("cs1", "customer_service").get("/api/notifications/?unread=maybe")
    assert response.status_code == 400
    assert response.json() == {"unread": ["Must be a valid boolean."]}


def test_marking_read_one_and_all_and_another_persons_is_404(api_as, make_user):
    me = api_as("cs1", "customer_service")
    mine = make_user("cs1")
    other = make_user("cs2", "customer_service")
    a = _one(template="sla_overdue", channel="in_app", user=mine, payload=_payload())
    b = _one(template="sla_backup", channel="in_app", user=mine, payload=_payload())
    theirs = _one(template="sla_overdue", channel="in_app", user=other, payload=_payload())

    response = me.post(f"/api/notifications/{theirs.pk}/read/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": f"You have no notification {theirs.pk}."}
    theirs.refresh_from_db()
    assert theirs.read_at is None

    response = me.post(f"/api/notifications/{a.pk}/read/")
    assert response.status_code == 200 and response.json()["is_read"] is True
    first_read = Notification.objects.get(pk=a.pk).read_at
    assert me.post(f"/api/notifications/{a.pk}/read/").status_code == 200
    assert Notification.objects.get(pk=a.pk).read_at == first_read  # reading again changes nothing

    assert me.post("/api/notifications/read-all/").json() == {"marked": 1}
    assert Notification.objects.get(pk=b.pk).read_at is not None
    assert Notification.objects.get(pk=theirs.pk).read_at is None
    assert me.get("/api/notifications/").json()["unread"] == 0


def test_inbox_needs_a_login(client):
    assert client.get("/api/notifications/").status_code == 401
    assert client.post("/api/notifications/read-all/").status_code == 401


def test_the_bell_is_in_the_page_header(make_user):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(make_user("sup2", "supervisor"))
    page = client.get("/").content.decode()
    assert 'id="inbox"' in page and 'data-api="/api/notifications/"' in page
    assert "js/inbox.js" in page


# --- The bell, in a real browser -------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_bell_counts_lists_marks_read_and_refreshes_when_a_page_hears_a_push(page_for):  # noqa: F811
    from playwright.sync_api import expect

    from orders.services import order_ingest_batch
    from tests.factories import PASSWORD, ChannelFactory, UserFactory

    def given():
        install_defaults(NotificationTemplate)
        ChannelFactory(code="jd", name="京东", tag_prefix="JD")
        user = UserFactory(username="bell", roles=["supervisor"])
        [result] = order_ingest_batch(payloads=[order_payload()], actor=system_actor("api:e2e"))
        order = Order.objects.get(pk=result.id)
        notify([Message(template="sla_overdue", channel="in_app", user=user, payload=_payload(order))])
        notify([Message(template="risk_quarantine", channel="in_app", user=user, payload=_payload(order))])
        return user, order

    user, order = off_the_loop(given)
    page = page_for("zh-CN")
    log_in(page, "bell", PASSWORD)
    badge = page.locator(".inbox-count")
    expect(badge).to_have_text("2")

    page.click(".inbox-bell")
    items = page.locator(".inbox-item")
    expect(items).to_have_count(2)
    expect(items.first.locator(".inbox-title")).to_have_text(f"订单 {order.tag} 被风控拦截")  # newest first
    page.click(".inbox-read-all")
    expect(badge).to_be_hidden()
    expect(page.locator(".inbox-unread")).to_have_count(0)

    # A new message; the page's socket would dispatch paidan:notified — the bell re-reads at
    # once instead of at its 30-second refresh.
    off_the_loop(
        lambda: notify(
            [
                Message(
                    template="sla_backup",
                    channel="in_app",
                    user=user,
                    payload=_payload(order),
                    order_id=order.pk,
                )
            ]
        )
    )
    page.evaluate("document.dispatchEvent(new CustomEvent('paidan:notified'))")
    expect(badge).to_have_text("1", timeout=5_000)
    unread = page.locator(".inbox-unread")
    expect(unread).to_have_count(1)
    unread.click()
    page.wait_for_url(f"**/orders/{order.pk}/")
    assert off_the_loop(lambda: Notification.objects.filter(read_at__isnull=True).count()) == 0
