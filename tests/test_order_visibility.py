"""Who sees which order: a supervisor their regions' orders (and those no region covers),
an agent only their own; everything else is 404, in the list, the API and the pages."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from orders.actors import system_actor
from orders.models import Order
from orders.services import order_ingest_batch
from tests.factories import RegionFactory, order_payload, token_for

pytestmark = pytest.mark.django_db


def ingest(external_id: str, address: str) -> Order:
    (result,) = order_ingest_batch(payloads=[order_payload(external_id=external_id, address=address)],
                                   actor=system_actor("t"))  # fmt: skip
    return Order.objects.get(pk=result.id)


def api_for(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


@pytest.fixture
def world(jd, make_user):
    south = RegionFactory(code="south", provinces=["广东省", "广西壮族自治区"])
    east = RegionFactory(code="east", provinces=["上海市", "浙江省"])
    south_boss = make_user("south_boss", "supervisor")
    south.supervisors.add(south_boss)
    east.supervisors.add(make_user("east_boss", "supervisor"))
    return {
        "south_boss": south_boss,
        "everywhere_boss": make_user("chief", "supervisor"),  # supervises no region in particular
        "sz": ingest("V-SZ", "广东省深圳市南山区科技园南区8栋"),
        "hz": ingest("V-HZ", "浙江省杭州市西湖区文三路90号"),
        "cd": ingest("V-CD", "四川省成都市武侯区人民南路四段1号"),  # no region covers 四川
    }


def test_a_supervisor_sees_their_regions_and_what_no_region_covers(world, client):
    api = api_for(world["south_boss"])
    tags = {o["tag"] for o in api.get("/api/orders/").json()["results"]}
    assert tags == {world["sz"].tag, world["cd"].tag}
    assert api.get(f"/api/orders/{world['hz'].pk}/").status_code == 404
    assert (
        api.post(f"/api/orders/{world['hz'].pk}/transition/", {"to": "picking"}, format="json").status_code
        == 404
    )
    assert Order.objects.get(pk=world["hz"].pk).stage == "pending_review"
    client.force_login(world["south_boss"])
    assert client.get(f"/orders/{world['hz'].pk}/").status_code == 404
    assert client.get(f"/orders/{world['sz'].pk}/").status_code == 200


def test_a_supervisor_of_no_particular_region_sees_every_order(world):
    results = api_for(world["everywhere_boss"]).get("/api/orders/").json()["results"]
    assert {o["tag"] for o in results} == {world[k].tag for k in ("sz", "hz", "cd")}
