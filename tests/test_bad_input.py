"""Every bad input to the API gets a clear error, and nothing stored changes."""

import json

import pytest

from orders.models import Customer, Order, OrderEvent, TagSequence
from tests.factories import order_payload

pytestmark = pytest.mark.django_db


def _state():
    return (
        list(
            Order.objects.order_by("pk").values_list(
                "pk", "external_id", "note", "amount", "source_updated_at"
            )
        ),
        OrderEvent.objects.count(),
        Customer.objects.count(),
        list(TagSequence.objects.values_list("last", flat=True)),
    )


@pytest.fixture
def stored(api, jd):
    """One order already stored, which bad input must not touch."""
    api.post("/api/orders/", order_payload(external_id="KEEP"), format="json")
    return _state()


def _post_raw(api, body: bytes, path="/api/orders/"):
    return api.generic("POST", path, body, content_type="application/json")


def test_malformed_json(api, stored):
    response = _post_raw(api, b'{"channel": "jd", "external_id": ')
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
    assert response.json()["detail"].startswith("The body is not valid JSON")
    assert _state() == stored


@pytest.mark.parametrize("field", ["channel", "external_id", "amount"])
def test_missing_required_field(api, stored, field):
    payload = order_payload(external_id="NEW")
    payload.pop(field)
    response = api.post("/api/orders/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][field] == ["This field is required."]
    assert _state() == stored


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ({"amount": "abc"}, "amount", "A valid number is required."),
        ({"amount": [1]}, "amount", "A valid number is required."),
        ({"items": "羽绒服"}, "items", 'Expected a list of items but got type "str".'),
        ({"customer": "王小明"}, "customer", "Invalid data. Expected a dictionary, but got str."),
        ({"urgency": "asap"}, "urgency", '"asap" is not a valid choice.'),
        ({"client_ip": "999.1.1.1"}, "client_ip", "Enter a valid IPv4 or IPv6 address."),
        ({"source_updated_at": "yesterday"}, "source_updated_at", None),
        ({"currency": "yuan"}, "currency", "This value does not match the required pattern."),
    ],
)
def test_wrong_types(api, stored, override, field, message):
    response = api.post("/api/orders/", order_payload(external_id="NEW", **override), format="json")
    assert response.status_code == 400
    errors = response.json()["errors"][field]
    if message:
        assert message in json.dumps(errors, ensure_ascii=False).replace('\\"', '"')
    assert _state() == stored


def test_negative_amount(api, stored):
    response = api.post("/api/orders/", order_payload(external_id="NEW", amount="-0.01"), format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == ["Ensure this value is greater than or equal to 0."]
    assert _state() == stored


def test_amount_with_three_decimals(api, stored):
    response = api.post("/api/orders/", order_payload(external_id="NEW", amount="12.345"), format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["amount"] == ["Ensure that there are no more than 2 decimal places."]
    assert _state() == stored


def test_an_update_with_bad_data_leaves_the_stored_order_untouched(api, stored):
    bad = order_payload(
        external_id="KEEP", source_updated_at="2026-11-21T00:00:00+08:00", amount="-1", note="x"
    )
    assert api.post("/api/orders/", bad, format="json").status_code == 400
    assert _state() == stored


def test_ten_megabyte_body_is_413(api, stored):
    body = json.dumps(order_payload(external_id="NEW", note="x" * (10 * 1024 * 1024))).encode()
    response = _post_raw(api, body)
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert _state() == stored
    batch = _post_raw(
        api,
        json.dumps({"orders": [order_payload(note="x" * (10 * 1024 * 1024))]}).encode(),
        "/api/orders/batch/",
    )
    assert batch.status_code == 413
    assert _state() == stored


def test_unknown_channel(api, stored):
    response = api.post("/api/orders/", order_payload(external_id="NEW", channel="pdd"), format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["channel"] == ["'pdd' is not a known channel."]
    assert _state() == stored


def test_lookalike_unicode_external_ids_are_one_order(api, stored):
    variants = ["ＫＥＥＰ", "KEEP\u200b", " KEEP ", "\ufeffKEEP"]
    for variant in variants:
        response = api.post("/api/orders/", order_payload(external_id=variant), format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["external_id"] == "KEEP"
    assert _state() == stored


def test_external_id_of_only_invisible_characters_is_refused(api, stored):
    response = api.post("/api/orders/", order_payload(external_id="\u200b\u200b"), format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["external_id"] == ["external_id is empty."]
    assert _state() == stored


def test_batch_with_only_bad_items_stores_nothing(api, stored):
    response = api.post(
        "/api/orders/batch/",
        {"orders": [order_payload(external_id="N1", amount="1.001"), {"external_id": "N2"}]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["rejected"] == 2
    assert _state() == stored
