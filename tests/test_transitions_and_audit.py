"""One state machine, role checks, hand edits, and an audit trail nobody can rewrite."""

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from orders.actors import system_actor
from orders.models import Order, OrderEvent
from orders.services import order_transition
from tests.factories import order_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def order_id(api, jd):
    return api.post("/api/orders/", order_payload(), format="json").json()["id"]


def _snapshot(order_id):
    order = Order.objects.get(pk=order_id)
    return (order.stage, order.held_stage, order.stage_entered_at, order.due_at, order.events.count())


def test_legal_path_to_done_is_audited(api, order_id):
    for stage in ("picking", "shipping", "done"):
        response = api.post(f"/api/orders/{order_id}/transition/", {"to": stage}, format="json")
        assert response.status_code == 200 and response.json()["stage"] == stage
    moves = list(
        OrderEvent.objects.filter(order_id=order_id, kind="transition").values_list("from_stage", "to_stage")
    )
    assert moves == [("pending_review", "picking"), ("picking", "shipping"), ("shipping", "done")]
    assert Order.objects.get(pk=order_id).due_at is None  # done has no deadline


def test_illegal_transition_is_409_and_changes_nothing(api, order_id):
    before = _snapshot(order_id)
    response = api.post(f"/api/orders/{order_id}/transition/", {"to": "done"}, format="json")
    assert response.status_code == 409
    assert response.json() == {
        "code": "illegal_transition",
        "detail": "An order cannot move from 'pending_review' to 'done'. Allowed from 'pending_review': "
        "cancelled, exception, picking, quarantined.",
    }
    assert _snapshot(order_id) == before


def test_unknown_target_stage_is_400(api, order_id):
    before = _snapshot(order_id)
    response = api.post(f"/api/orders/{order_id}/transition/", {"to": "teleported"}, format="json")
    assert response.status_code == 400 and "to" in response.json()
    assert _snapshot(order_id) == before


def test_role_that_may_not_move_gets_403_and_nothing_changes(api_as, order_id):
    warehouse = api_as("wh", "warehouse")
    before = _snapshot(order_id)
    response = warehouse.post(f"/api/orders/{order_id}/transition/", {"to": "picking"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "role_forbidden"
    assert "warehouse" in response.json()["detail"]
    assert _snapshot(order_id) == before


def test_warehouse_moves_picking_and_shipping(api, api_as, order_id):
    api.post(f"/api/orders/{order_id}/transition/", {"to": "picking"}, format="json")
    warehouse = api_as("wh", "warehouse")
    assert (
        warehouse.post(f"/api/orders/{order_id}/transition/", {"to": "shipping"}, format="json").status_code
        == 200
    )
    assert (
        warehouse.post(f"/api/orders/{order_id}/transition/", {"to": "done"}, format="json").status_code
        == 200
    )


def test_exception_holds_the_stage_and_returns_to_it(api, order_id):
    api.post(f"/api/orders/{order_id}/transition/", {"to": "picking"}, format="json")
    api.post(f"/api/orders/{order_id}/transition/", {"to": "exception", "reason": "缺货"}, format="json")
    assert Order.objects.get(pk=order_id).held_stage == "picking"
    wrong = api.post(f"/api/orders/{order_id}/transition/", {"to": "shipping"}, format="json")
    assert wrong.status_code == 409 and "returns the order to 'picking'" in wrong.json()["detail"]
    back = api.post(f"/api/orders/{order_id}/transition/", {"to": "picking"}, format="json")
    assert back.status_code == 200
    assert Order.objects.get(pk=order_id).held_stage == ""


def test_quarantine_release_by_risk_reviewer_only(api, api_as, order_id):
    order_transition(order_id=order_id, to="quarantined", actor=system_actor("risk:test"), reason="score 80")
    cs = api_as("cs1", "customer_service")
    assert (
        cs.post(f"/api/orders/{order_id}/transition/", {"to": "pending_review"}, format="json").status_code
        == 403
    )
    reviewer = api_as("rv", "risk_reviewer")
    assert (
        reviewer.post(
            f"/api/orders/{order_id}/transition/", {"to": "pending_review"}, format="json"
        ).status_code
        == 200
    )


def test_customer_service_edits_contact_details_and_it_is_audited(api_as, order_id):
    cs = api_as("cs1", "customer_service")
    response = cs.patch(
        f"/api/orders/{order_id}/",
        {
            "address": "浙江省杭州市西湖区文三路90号",
            "customer_phone": "138 0013 8000",
            "reason": "客户来电更正",
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    order = Order.objects.get(pk=order_id)
    assert (order.city, order.customer_phone) == ("杭州市", "+8613800138000")
    edit = order.events.get(kind="edit")
    assert edit.actor == "cs1" and edit.reason == "客户来电更正"
    assert edit.changes["city"] == ["深圳市", "杭州市"]


def test_warehouse_may_not_edit_customer_details(api_as, order_id):
    warehouse = api_as("wh", "warehouse")
    before = Order.objects.get(pk=order_id).address
    response = warehouse.patch(f"/api/orders/{order_id}/", {"address": "别处"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "field_forbidden"
    assert Order.objects.get(pk=order_id).address == before
    assert not OrderEvent.objects.filter(order_id=order_id, kind="edit").exists()


def test_audit_events_cannot_be_changed_or_deleted_through_the_orm(order_id):
    event = OrderEvent.objects.filter(order_id=order_id).first()
    event.reason = "rewritten"
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()
    with pytest.raises(ValidationError):
        OrderEvent.objects.filter(order_id=order_id).update(reason="x")
    with pytest.raises(ValidationError):
        OrderEvent.objects.filter(order_id=order_id).delete()
    assert OrderEvent.objects.get(pk=event.pk).reason == ""


def test_audit_trail_refuses_raw_sql_on_postgresql(order_id):
    assert connection.vendor == "postgresql"
    for sql in (
        "UPDATE orders_orderevent SET reason = 'x'",
        "DELETE FROM orders_orderevent",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cur,
        ):
            cur.execute(sql)
    assert OrderEvent.objects.filter(order_id=order_id, reason="x").count() == 0


def test_admin_cannot_change_or_delete_audit_events(client, make_user, order_id):
    admin = make_user("root", "admin", is_superuser=True, is_staff=True)
    client.force_login(admin)
    event = OrderEvent.objects.filter(order_id=order_id).first()
    assert client.get("/admin/orders/orderevent/").status_code == 200
    page = client.get(f"/admin/orders/orderevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="reason"' not in page.content  # read-only view
    delete = client.post(f"/admin/orders/orderevent/{event.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert client.post(f"/admin/orders/orderevent/{event.pk}/change/", {"reason": "x"}).status_code == 403
    assert OrderEvent.objects.filter(pk=event.pk).exists()
