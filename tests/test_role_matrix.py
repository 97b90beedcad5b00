"""The role matrix: every page and API read × every role → the status it must get, on one
order in the south region owned by `agent`. Object level: another agent's order is 404, a
supervisor of another region gets 404 for an order outside it; writes are checked by role."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from orders.actors import system_actor
from orders.models import Order
from orders.services import order_ingest_batch
from tests.factories import AgentFactory, RegionFactory, order_payload

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "agent", "other_agent", "warehouse", "customer_service", "risk_reviewer",
         "other_supervisor", "supervisor", "admin"]  # fmt: skip

# path → expected status per role, in ROLES order. 302: to the login page (pages) or the admin
# login (admin); 401: API without credentials; 403: the role may not use it at all; 404: the
# object exists but is not theirs to see.
# fmt: off
MATRIX = {
    "/":                          (302, 200, 200, 200, 200, 200, 200, 200, 200),
    "/orders/{o}/":               (302, 200, 404, 200, 200, 200, 404, 200, 200),
    "/imports/":                  (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/queue/":                    (302, 200, 200, 403, 403, 403, 403, 403, 403),
    "/dispatch/manual/":          (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/dispatch/simulations/":     (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/risk/reviews/":             (302, 403, 403, 403, 403, 200, 200, 200, 200),
    "/risk/report/":              (302, 403, 403, 403, 403, 200, 200, 200, 200),
    "/board/":                    (302, 403, 403, 200, 200, 200, 200, 200, 200),
    "/alerts/":                   (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/reports/":                  (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/reports/sla/":              (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/reports/weekly/":           (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/admin/":                    (302, 302, 302, 302, 302, 302, 302, 302, 200),
    "/api/orders/":               (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/orders/{o}/":           (401, 200, 404, 200, 200, 200, 404, 200, 200),
    "/api/orders/{o}/timeline/":  (401, 200, 404, 200, 200, 200, 404, 200, 200),
    "/api/assignments/":          (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/pool/":                 (401, 403, 403, 403, 403, 403, 200, 200, 200),
    "/api/reviews/":              (401, 403, 403, 403, 403, 200, 200, 200, 200),
    "/api/agents/me/":            (401, 200, 200, 403, 403, 403, 403, 403, 403),
    "/api/board/?stage=picking":  (401, 403, 403, 200, 200, 200, 200, 200, 200),
    "/api/board/counts/":         (401, 403, 403, 200, 200, 200, 200, 200, 200),
    "/api/alerts/":               (401, 403, 403, 403, 403, 403, 200, 200, 200),
    "/api/exceptions/":           (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/exception-types/":      (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/notifications/":        (401, 200, 200, 200, 200, 200, 200, 200, 200),
}
# fmt: on


@pytest.fixture
def world(jd, make_user):
    south = RegionFactory(code="south", provinces=["广东省"])
    east = RegionFactory(code="east", provinces=["浙江省"])
    users = {
        "agent": make_user("ag", "agent"),
        "other_agent": make_user("ag2", "agent"),
        "warehouse": make_user("wh", "warehouse"),
        "customer_service": make_user("cs", "customer_service"),
        "risk_reviewer": make_user("rv", "risk_reviewer"),
        "other_supervisor": make_user("es", "supervisor"),
        "supervisor": make_user("ss", "supervisor"),
        "admin": make_user("ad", "admin", is_staff=True, is_superuser=True),
    }
    AgentFactory(user=users["agent"])
    AgentFactory(user=users["other_agent"])
    east.supervisors.add(users["other_supervisor"])
    south.supervisors.add(users["supervisor"])
    (result,) = order_ingest_batch(
        payloads=[order_payload(external_id="RM-1", address="广东省深圳市南山区科技园南区8栋")],
        actor=system_actor("t"),
    )
    Order.objects.filter(pk=result.id).update(owner=users["agent"])
    return users, Order.objects.get(pk=result.id)


def client_as(users: dict, role: str) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if role != "anonymous":
        client.force_login(users[role])
    return client


def test_every_page_and_api_read_answers_each_role_as_the_matrix_says(world):
    users, order = world
    got, want = {}, {}
    for role_index, role in enumerate(ROLES):
        client = client_as(users, role)
        for path, statuses in MATRIX.items():
            url = path.format(o=order.pk)
            got[(url, role)] = client.get(url).status_code
            want[(url, role)] = statuses[role_index]
    wrong = {key: (got[key], want[key]) for key in got if got[key] != want[key]}
    assert not wrong, f"(url, role): (got, want) {wrong}"


def test_the_board_cards_of_an_order_outside_a_supervisors_regions_are_not_returned(world):
    users, order = world
    url = f"/api/board/cards/?ids={order.pk}"
    mine = client_as(users, "supervisor").get(url).json()
    theirs = client_as(users, "other_supervisor").get(url).json()
    assert [c["id"] for c in mine["cards"]] == [order.pk]
    assert theirs["cards"] == []


@pytest.mark.parametrize(
    ("role", "to", "status"),
    [
        ("warehouse", "picking", 403),  # warehouse moves only picking and shipping
        ("risk_reviewer", "picking", 403),
        ("other_agent", "picking", 404),  # not theirs: it does not exist for them
        ("other_supervisor", "picking", 404),
        ("customer_service", "picking", 200),
        ("agent", "picking", 200),
        ("supervisor", "done", 409),  # the state machine, whoever asks
    ],
)
def test_stage_moves_obey_role_and_ownership(world, role, to, status):
    users, order = world
    response = client_as(users, role).post(f"/api/orders/{order.pk}/transition/", {"to": to}, format="json")
    assert response.status_code == status, response.content
    order.refresh_from_db()
    assert order.stage == ("picking" if status == 200 else "pending_review")


@pytest.mark.parametrize(
    ("role", "field", "status"),
    [
        ("customer_service", "address", 200),
        ("customer_service", "note", 200),
        ("warehouse", "note", 403),
        ("agent", "note", 200),
        ("agent", "customer_name", 403),
        ("other_agent", "note", 404),
    ],
)
def test_customer_details_and_notes_are_edited_by_the_roles_that_may(world, role, field, status):
    users, order = world
    value = "浙江省杭州市西湖区文三路90号" if field == "address" else "改了"
    response = client_as(users, role).patch(f"/api/orders/{order.pk}/", {field: value}, format="json")
    assert response.status_code == status, response.content
    order.refresh_from_db()
    assert (getattr(order, field) == value) == (status == 200)
