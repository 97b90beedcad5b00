from orders.models import Order, OrderEvent
from tests.factories import order_payload


def test_post_one_order_creates_it_with_tag_and_audit(api, jd):
    response = api.post("/api/orders/", order_payload(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["tag"].startswith("JD-")
    assert body["stage"] == "pending_review"
    order = Order.objects.get()
    assert order.city == "深圳市"
    assert order.customer_phone == "+8613510001000"
    assert OrderEvent.objects.filter(order=order, kind="ingested").count() == 1
