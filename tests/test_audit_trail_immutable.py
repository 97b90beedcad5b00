"""The audit trails cannot be rewritten on any path of the app, and what admins do is in them.

The order trail (OrderEvent) and the admin's history (LogEntry): every ORM path, raw SQL
(UPDATE, DELETE, TRUNCATE and a cascade into the trail), the admin's views and actions, and
deleting what the trail points at. tests/test_transitions_and_audit.py has the first ORM and
raw-SQL checks; these are the paths it leaves out."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import ProtectedError

from dashboards.models import Alert, Notification
from dispatch.models import PoolEntry
from orders import services
from orders.actors import system_actor
from orders.models import Order, OrderEvent, OutboundDelivery, WebhookSubscription
from tests.factories import AgentFactory, order_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(jd) -> Order:
    result = services.order_ingest(payload=order_payload(), actor=system_actor("test"))
    assert result.status == "created", result.errors
    return Order.objects.get(pk=result.id)


@pytest.fixture
def root(client, make_user) -> User:
    user = make_user("root", is_staff=True, is_superuser=True)
    client.force_login(user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return user


def trail(order: Order) -> list[tuple]:
    return list(
        OrderEvent.objects.filter(order=order).values_list("pk", "kind", "actor", "reason", "to_stage")
    )


def refused_by_the_database(sql: str, *, truncate_allowed: bool = False) -> str:
    """Runs `sql` in its own savepoint; returns PostgreSQL's refusal."""
    with pytest.raises(DatabaseError) as refusal, transaction.atomic(), connection.cursor() as cursor:
        # The test session may truncate (tests/conftest.py, for the flush); the app never may.
        cursor.execute("SET LOCAL paidan.allow_audit_truncate = %s", ["on" if truncate_allowed else "off"])
        # PostgreSQL refuses TRUNCATE while this test's own inserts have deferred FK checks
        # pending; run them now so the statement reaches the trigger, as in a fresh transaction.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(sql)
    return str(refusal.value)


# --- The order trail ---------------------------------------------------------------------


def test_no_orm_path_rewrites_an_event_or_deletes_it_with_its_order(order):
    before = trail(order)
    event = OrderEvent.objects.filter(order=order).first()
    event.reason = "rewritten"

    with pytest.raises(ValidationError), transaction.atomic():
        event.save(force_update=True)
    with pytest.raises(ValidationError), transaction.atomic():
        OrderEvent.objects.bulk_update([event], ["reason"])
    with pytest.raises(ValidationError), transaction.atomic():
        OrderEvent.objects.update_or_create(pk=event.pk, defaults={"reason": "rewritten"})
    with pytest.raises(IntegrityError), transaction.atomic():
        event.save(force_insert=True)  # a second row with its id: refused, not an overwrite
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        OrderEvent.objects.filter(pk=event.pk)._raw_delete(using="default")  # the collector's fast path
    # an order, its channel or the person named on its events cannot be deleted from under them
    with pytest.raises(ProtectedError):
        order.delete()
    with pytest.raises(ProtectedError):
        Order.objects.filter(pk=order.pk).delete()
    with pytest.raises(ProtectedError):
        order.channel.delete()

    assert trail(order) == before


def test_raw_sql_cannot_truncate_the_trail_or_cascade_into_it(order):
    before = trail(order)

    for sql in ("TRUNCATE orders_orderevent", "TRUNCATE orders_order CASCADE"):
        assert "orders_orderevent is append-only: TRUNCATE refused" in refused_by_the_database(sql)

    assert trail(order) == before


def test_a_superuser_has_no_admin_view_or_action_that_writes_events(client, root, order):
    before = trail(order)
    event_pk = before[0][0]

    add = client.get("/admin/orders/orderevent/add/")
    listing = client.get("/admin/orders/orderevent/")
    bulk_delete = client.post(
        "/admin/orders/orderevent/",
        {"action": "delete_selected", "_selected_action": [event_pk], "post": "yes"},
    )
    order_delete = client.post(f"/admin/orders/order/{order.pk}/delete/", {"post": "yes"})
    # the order's page lists its events inline; a forged inline deletion is ignored
    order_change = client.post(
        f"/admin/orders/order/{order.pk}/change/",
        {
            "events-TOTAL_FORMS": "1",
            "events-INITIAL_FORMS": "1",
            "events-0-id": str(event_pk),
            "events-0-order": str(order.pk),
            "events-0-DELETE": "on",
            "events-0-reason": "rewritten",
        },
    )

    assert add.status_code == 403
    assert listing.status_code == 200 and 'name="action"' not in listing.content.decode()
    assert bulk_delete.status_code in (200, 302)
    assert order_delete.status_code == 403
    assert order_change.status_code in (200, 302)
    assert trail(order) == before


# --- The admin's history -----------------------------------------------------------------


def test_the_admin_history_is_visible_and_cannot_be_rewritten_or_deleted(client, root, make_user):
    # given two admins, each with history
    other = make_user("ops", is_staff=True, is_superuser=True)
    LogEntry.objects.log_actions(user_id=root.pk, queryset=[other], action_flag=CHANGE, change_message="a")
    LogEntry.objects.log_actions(user_id=other.pk, queryset=[root], action_flag=CHANGE, change_message="b")
    entry = LogEntry.objects.get(user=root)
    before = list(LogEntry.objects.values_list("pk", "user_id", "change_message"))

    # then raw SQL and the ORM cannot rewrite it
    for sql in ("UPDATE django_admin_log SET change_message = 'x'", "DELETE FROM django_admin_log"):
        assert "django_admin_log is append-only" in refused_by_the_database(sql)
    assert "django_admin_log is append-only: TRUNCATE refused" in refused_by_the_database(
        "TRUNCATE django_admin_log"
    )
    for write in (lambda: LogEntry.objects.filter(pk=entry.pk).update(change_message="x"), entry.delete):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            write()
    # and the admin shows it without a way to change it
    page = f"/admin/admin/logentry/{entry.pk}"
    assert client.get("/admin/admin/logentry/").status_code == 200
    assert client.get(f"{page}/change/").status_code == 200
    assert client.post(f"{page}/change/", {"change_message": "x"}).status_code == 403
    assert client.post(f"{page}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/admin/logentry/add/").status_code == 403
    # nor erase it by deleting the admin it names: refused in the admin and in the database
    delete_page = client.get(f"/admin/auth/user/{other.pk}/delete/")
    assert "log entry" in delete_page.content.decode()  # listed as what may not be deleted
    assert client.post(f"/admin/auth/user/{other.pk}/delete/", {"post": "yes"}).status_code == 403
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        other.delete()
    assert list(LogEntry.objects.values_list("pk", "user_id", "change_message")) == before


# --- Admin actions are audited -------------------------------------------------------------

# Actions that only read: a dry run computes what a rule would have hit and changes nothing.
READ_ONLY_ACTIONS = {"riskcontrol.admin.RuleAdmin.dry_run_selected"}


def test_every_custom_admin_action_writes_the_admin_log():
    unaudited = []
    for model_admin in admin.site._registry.values():
        for action in model_admin.actions or ():
            func = getattr(type(model_admin), action) if isinstance(action, str) else action
            name = f"{type(model_admin).__module__}.{func.__qualname__}"
            if (
                action != "delete_selected"
                and name not in READ_ONLY_ACTIONS
                and not getattr(func, "audited", False)
            ):
                unaudited.append(name)
    assert unaudited == [], "decorate them with orders.admin_audit.audited_action"


def _logged(obj, user) -> list[str]:
    return [
        e.get_change_message()
        for e in LogEntry.objects.filter(object_id=str(obj.pk), content_type__model=obj._meta.model_name)
        if e.user_id == user.pk
    ]


def _run(client, changelist: str, action: str, *objs, **extra) -> int:
    data = {"action": action, "_selected_action": [o.pk for o in objs], **extra}
    return client.post(f"/admin/{changelist}/", data).status_code


def test_each_custom_admin_action_leaves_a_log_entry_naming_the_admin(client, root, order):
    alert = Alert.objects.create(kind="sla_overdue", message="late", dedupe_key="t-1")
    given_up = Notification.objects.create(
        channel="email", target="ops@example.com", template="t", status=Notification.Status.FAILED
    )
    switched_off = WebhookSubscription.objects.create(
        name="erp", url="https://erp.example/hook", secret="s" * 20, is_active=False
    )
    delivery = OutboundDelivery.objects.create(
        subscription=switched_off, event_id="e-1", event_type="order.created", payload={}
    )
    entry = PoolEntry.objects.get(order=order)
    agent = AgentFactory()

    assert _run(client, "dashboards/alert", "acknowledge", alert) == 302
    assert _run(client, "dashboards/notification", "send_again", given_up) == 302
    assert _run(client, "orders/outbounddelivery", "replay", delivery) == 302
    form_page = _run(client, "dispatch/poolentry", "assign_to_agent", entry)
    logged_before_applying = _logged(entry, root)
    assert _run(client, "dispatch/poolentry", "assign_to_agent", entry, apply="1", agent=agent.pk) == 302
    assert _run(client, "dispatch/poolentry", "return_to_pool", entry) == 302

    assert _logged(alert, root) == ["Ran the admin action “Acknowledge”."]
    assert _logged(given_up, root) == [
        "Ran the admin action “Send again (given-up ones; attempts are kept)”."
    ]
    assert _logged(delivery, root) == [
        "Ran the admin action “Replay now (delivered ones too; each try is a new attempt)”."
    ]
    assert form_page == 200 and logged_before_applying == []  # the form alone did nothing
    assert sorted(_logged(entry, root)) == [
        "Ran the admin action “Assign the selected orders to an agent…”.",
        "Ran the admin action “Return the selected orders to automatic matching”.",
    ]
    # the order's own trail names the admin too
    assert OrderEvent.objects.filter(order=order, kind="assignment", actor="root").count() == 2
    alert.refresh_from_db()
    assert alert.acknowledged_by == root


def test_an_admin_change_through_the_admin_site_is_logged_with_its_author(client, root, order):
    alert = Alert.objects.create(kind="sla_overdue", message="late", dedupe_key="t-2")

    deleted = client.post(f"/admin/dashboards/alert/{alert.pk}/delete/", {"post": "yes"})

    assert deleted.status_code == 302 and not Alert.objects.filter(pk=alert.pk).exists()
    entry = LogEntry.objects.get(object_id=str(alert.pk), content_type__model="alert")
    assert (entry.user, entry.is_deletion(), entry.object_repr) == (root, True, "late")
