"""The order page's correction form: customer service edits contact details and notes, an
agent only the note of their own order, warehouse nothing; bad input changes nothing."""

from __future__ import annotations

import pytest

from orders.actors import system_actor
from orders.models import Order, OrderEvent
from orders.services import order_ingest_batch
from tests.factories import order_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(jd) -> Order:
    (result,) = order_ingest_batch(payloads=[order_payload(external_id="EDIT-1")], actor=system_actor("t"))
    return Order.objects.get(pk=result.id)


def page(client, user, order, data=None):
    client.force_login(user)
    url = f"/orders/{order.pk}/"
    return client.post(url, data) if data is not None else client.get(url)


def test_customer_service_corrects_the_address_and_it_is_audited(client, make_user, order):
    cs = make_user("cs1", "customer_service")
    body = page(client, cs, order).content.decode()
    assert 'id="order-edit"' in body and 'name="address"' in body and 'name="customer_name"' in body
    response = page(client, cs, order, {
        "customer_name": order.customer_name, "customer_phone": order.customer_phone,
        "address": "上海市浦东新区世纪大道100号", "note": order.note, "reason": "客户来电更正",
    })  # fmt: skip
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.address == "上海市浦东新区世纪大道100号" and order.province == "上海市"
    event = OrderEvent.objects.filter(order=order, kind=OrderEvent.Kind.EDIT).get()
    assert event.actor_user_id == cs.pk and set(event.changes) >= {"address", "province"}
    assert event.reason == "客户来电更正"


def test_an_unchanged_form_is_not_an_edit(client, make_user, order):
    cs = make_user("cs1", "customer_service")
    response = page(client, cs, order, {
        "customer_name": order.customer_name, "customer_phone": order.customer_phone,
        "address": order.address, "note": order.note, "reason": "",
    })  # fmt: skip
    assert response.status_code == 302
    assert not OrderEvent.objects.filter(order=order, kind=OrderEvent.Kind.EDIT).exists()


def test_bad_input_is_shown_and_nothing_is_stored(client, make_user, order):
    cs = make_user("cs1", "customer_service")
    before = Order.objects.values().get(pk=order.pk)
    response = page(client, cs, order, {
        "customer_name": "", "customer_phone": "1" * 41, "address": "x", "note": "", "reason": "",
    })  # fmt: skip
    assert response.status_code == 200
    errors = response.context["edit_form"].errors
    assert "customer_name" in errors and "customer_phone" in errors
    assert Order.objects.values().get(pk=order.pk) == before
    assert not OrderEvent.objects.filter(order=order, kind=OrderEvent.Kind.EDIT).exists()


def test_warehouse_gets_no_form_and_a_forged_post_is_refused(client, make_user, order):
    wh = make_user("wh1", "warehouse")
    assert 'id="order-edit"' not in page(client, wh, order).content.decode()
    response = page(client, wh, order, {"customer_name": "x", "reason": ""})
    assert response.status_code == 403
    assert Order.objects.get(pk=order.pk).customer_name == order.customer_name


def test_an_agent_edits_only_the_note_of_their_own_order(client, make_user, order):
    agent_user = make_user("ag1", "agent")
    other = make_user("ag2", "agent")
    Order.objects.filter(pk=order.pk).update(owner=agent_user)
    body = page(client, agent_user, order).content.decode()
    assert 'name="note"' in body and 'name="address"' not in body
    response = page(client, agent_user, order, {"note": "客户要求下午送", "address": "北京市", "reason": ""})
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.note == "客户要求下午送" and order.address != "北京市"
    assert page(client, other, order).status_code == 404
    assert page(client, other, order, {"note": "hijack"}).status_code == 404
