"""The role matrix: every page and API read × every role → the status it must get, on objects
in the south region that belong to `agent` (an order, its timeline) or to the south's people
(a review taken by `risk_reviewer`, an alert, an import job, a simulation run). Object level:
another agent's order is 404, a supervisor of another region gets 404 for an order or a review
outside it. The writes are in tests/test_role_matrix_writes.py, with the test that every URL
pattern and method of the project has a row here or there."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.utils import timezone
from rest_framework.test import APIClient, ForceAuthClientHandler

from agents.models import Agent, Region
from dashboards.alerts import alert_raise
from dashboards.models import Alert, Notification
from dispatch.models import Assignment, DispatchPolicy, Inquiry
from dispatch.services import inquiry_assign, inquiry_create, review_pool_add
from dispatch.sim.services import simulation_request
from orders.actors import system_actor
from orders.defaults import install_defaults as install_order_defaults
from orders.exceptions import exception_raise
from orders.imports import import_job_create
from orders.models import Channel, ExceptionCase, ExceptionType, ImportJob, Order, SlaPolicy
from orders.services import order_ingest_batch
from riskcontrol.models import Review
from tests.factories import AgentFactory, RegionFactory, order_payload

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "agent", "other_agent", "warehouse", "customer_service", "risk_reviewer",
         "other_supervisor", "supervisor", "admin"]  # fmt: skip

SZ = "广东省深圳市南山区科技园南区8栋1203"  # the south region
SYSTEM = system_actor("test")

# path → expected status per role, in ROLES order. 302: to the login page (pages) or the admin
# login (admin); 401: API without credentials; 403: the role may not use it at all; 404: the
# object exists but is not theirs to see. Import jobs and simulation runs are shared by every
# supervisor (the upload page lists everyone's jobs; a run replays every region's orders), so
# a supervisor of another region reads them. The API schema and its docs page are public: an
# integrator reads them before it has an account, and they hold no data.
# fmt: off
MATRIX = {
    #                                            anon agnt oagt ware cs   risk osup sup  admn
    "/":                                        (302, 200, 200, 200, 200, 200, 200, 200, 200),
    "/login/":                                  (200, 200, 200, 200, 200, 200, 200, 200, 200),
    "/orders/{order}/":                         (302, 200, 404, 200, 200, 200, 404, 200, 200),
    "/orders/export.csv":                       (302, 200, 200, 200, 200, 200, 200, 200, 200),
    "/imports/":                                (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/imports/{job}/":                          (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/imports/{job}/status.json":               (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/imports/{job}/errors.csv":                (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/queue/":                                  (302, 200, 200, 403, 403, 200, 403, 403, 403),
    "/dispatch/manual/":                        (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/dispatch/simulations/":                   (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/dispatch/simulations/{run}/":             (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/dispatch/simulations/{run}/status.json":  (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/risk/reviews/":                           (302, 403, 403, 403, 403, 200, 200, 200, 200),
    "/risk/reviews/{review}/":                  (302, 403, 403, 403, 403, 200, 404, 200, 200),
    "/risk/report/":                            (302, 403, 403, 403, 403, 200, 200, 200, 200),
    "/board/":                                  (302, 403, 403, 200, 200, 200, 200, 200, 200),
    "/alerts/":                                 (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/reports/":                                (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/reports/sla/":                            (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/reports/weekly/":                         (302, 403, 403, 403, 403, 403, 200, 200, 200),
    "/admin/":                                  (302, 302, 302, 302, 302, 302, 302, 302, 200),
    "/api/schema/":                             (200, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/docs/":                               (200, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/orders/":                             (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/orders/{order}/":                     (401, 200, 404, 200, 200, 200, 404, 200, 200),
    "/api/orders/{order}/timeline/":            (401, 200, 404, 200, 200, 200, 404, 200, 200),
    "/api/assignments/":                        (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/inquiries/":                          (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/pool/":                               (401, 403, 403, 403, 403, 403, 200, 200, 200),
    "/api/reviews/":                            (401, 403, 403, 403, 403, 200, 200, 200, 200),
    "/api/reviews/{review}/":                   (401, 403, 403, 403, 403, 200, 404, 200, 200),
    "/api/agents/me/":                          (401, 200, 200, 403, 403, 200, 403, 403, 403),
    "/api/board/?stage=picking":                (401, 403, 403, 200, 200, 200, 200, 200, 200),
    "/api/board/counts/":                       (401, 403, 403, 200, 200, 200, 200, 200, 200),
    "/api/board/cards/?ids={order}":            (401, 403, 403, 200, 200, 200, 200, 200, 200),
    "/api/alerts/":                             (401, 403, 403, 403, 403, 403, 200, 200, 200),
    "/api/exceptions/":                         (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/exception-types/":                    (401, 200, 200, 200, 200, 200, 200, 200, 200),
    "/api/notifications/":                      (401, 200, 200, 200, 200, 200, 200, 200, 200),
}
# fmt: on


@dataclass
class World:
    """Two regions, one account per role, and makers of fresh objects that belong to `agent`
    or to the south region, so that one role's write never changes the next role's answer."""

    users: dict[str, User]
    agents: dict[str, Agent]
    south: Region
    east: Region
    channel: Channel
    _seq: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next(self) -> int:
        return next(self._seq)

    def order(self, *, owner: str | None = "agent", address: str = SZ) -> Order:
        """A south order (unless `address` says otherwise) in pending review, through the one
        ingest path (pool entry included)."""
        (result,) = order_ingest_batch(
            payloads=[order_payload(external_id=f"RM-{self.next()}", address=address)], actor=SYSTEM
        )
        assert result.status == "created", result.errors
        if owner:
            Order.objects.filter(pk=result.id).update(owner=self.users[owner])
        return Order.objects.get(pk=result.id)

    def assignment(self) -> Assignment:
        """An open offer of a fresh order to `agent`."""
        order = self.order(owner=None)
        now = timezone.now()
        entry = order.pool_entry
        entry.state = entry.State.OFFERED
        entry.save(update_fields=["state"])
        return Assignment.objects.create(
            entry=entry, order=order, agent=self.agents["agent"], offered_at=now,
            expires_at=now + timedelta(minutes=10),
        )  # fmt: skip

    def case(self) -> ExceptionCase:
        """An open exception on a fresh order of `agent`'s, held in pending review."""
        order = self.order()
        return exception_raise(
            order_id=order.pk, type_code="damaged", note="箱子破了", delay_until=None, actor=SYSTEM
        )

    def inquiry(self, *, held: bool = True) -> Inquiry:
        inquiry = inquiry_create(
            channel=self.channel, account_id=f"acct-{self.next()}", customer_name="王", text="羽绒服尺码",
            vip=False,
        )  # fmt: skip
        if held:
            inquiry_assign(inquiry_id=inquiry.pk, agent_id=self.agents["agent"].pk, actor=SYSTEM)
        return Inquiry.objects.get(pk=inquiry.pk)

    def notification(self, user: str = "agent") -> Notification:
        return Notification.objects.create(
            user=self.users[user], channel=Notification.Channel.IN_APP, template="t",
            subject="你有新的派单", status=Notification.Status.SENT,
        )  # fmt: skip

    def review(self, reviewer: str = "risk_reviewer") -> Review:
        """An open review of a held south order, taken by `reviewer`."""
        order = self.order(owner=None)
        Order.objects.filter(pk=order.pk).update(stage="quarantined")
        review = Review.objects.create(order=order, score=80, reason="临时仓", agent=self.agents[reviewer])
        review_pool_add(reviews=[(review, self.south.pk)], now=timezone.now())
        return review

    def alert(self) -> Alert:
        n = self.next()
        return alert_raise(
            kind=Alert.Kind.SLA_L3, level=3, key=f"rm-{n}", message=f"alert {n}", now=timezone.now(),
            region=self.south,
        )  # fmt: skip

    def import_job(self) -> ImportJob:
        return import_job_create(
            channel=self.channel, original_name="orders.csv", source="upload",
            uploaded_by=self.users["supervisor"], file=ContentFile(b"external_id,address\n"),
        )  # fmt: skip

    def simulation_run(self):
        policy, _created = DispatchPolicy.objects.get_or_create(
            name="draft: nearest first", defaults={"is_active": False}
        )
        start = timezone.localdate() - timedelta(days=8)
        return simulation_request(
            user=self.users["supervisor"], policy=policy, start=start, end=start + timedelta(days=7)
        )


def build_world(jd, make_user, settings) -> World:
    """The world of the matrix; each module that uses it declares a `world` fixture calling this."""
    # Eight accounts per test: the production hasher alone would cost seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
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
    # Reviewers get their review tasks through dispatch, so they have an agent profile too.
    agents = {
        role: AgentFactory(user=users[role], capacity=100)
        for role in ("agent", "other_agent", "risk_reviewer")
    }
    east.supervisors.add(users["other_supervisor"])
    south.supervisors.add(users["supervisor"])
    # A data migration installs them, but a transactional test's flush empties the tables.
    install_order_defaults(SlaPolicy, ExceptionType)
    return World(users=users, agents=agents, south=south, east=east, channel=jd)


@pytest.fixture
def world(jd, make_user, settings) -> World:
    return build_world(jd, make_user, settings)


@functools.cache
def _handler(enforce_csrf_checks: bool) -> ForceAuthClientHandler:
    return ForceAuthClientHandler(enforce_csrf_checks=enforce_csrf_checks)


def client_as(world: World, role: str, *, enforce_csrf_checks: bool = False) -> APIClient:
    """A client logged in as `role` (a session, as a browser has). Clients share one handler:
    each new one would load the middleware again, WhiteNoise's scan of the static files
    included (~0.25 s, hundreds of times)."""
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en", enforce_csrf_checks=enforce_csrf_checks)
    client.handler = _handler(enforce_csrf_checks)
    if role != "anonymous":
        client.force_login(world.users[role])
    return client


def test_every_page_and_api_read_answers_each_role_as_the_matrix_says(world):
    ids = {
        "order": world.order().pk,
        "review": world.review().pk,
        "job": world.import_job().pk,
        "run": world.simulation_run().pk,
    }
    got, want = {}, {}
    for role_index, role in enumerate(ROLES):
        client = client_as(world, role)
        for path, statuses in MATRIX.items():
            url = path.format(**ids)
            got[(url, role)] = client.get(url).status_code
            want[(url, role)] = statuses[role_index]
    wrong = {key: (got[key], want[key]) for key in got if got[key] != want[key]}
    assert not wrong, f"(url, role): (got, want) {wrong}"


def test_the_board_cards_of_an_order_outside_a_supervisors_regions_are_not_returned(world):
    order = world.order()
    url = f"/api/board/cards/?ids={order.pk}"
    mine = client_as(world, "supervisor").get(url).json()
    theirs = client_as(world, "other_supervisor").get(url).json()
    assert [c["id"] for c in mine["cards"]] == [order.pk]
    assert theirs["cards"] == []


# list → whether each role but anonymous (ROLES[1:]) finds in it the south object of
# `agent`'s: 1 it is listed, 0 it is left out, None the role may not read the list (403).
# fmt: off
LISTS = {
    #                                     agnt  oagt  ware  cs    risk  osup  sup   admn
    "/api/orders/":                       (1,    0,    1,    1,    1,    0,    1,    1),
    "/api/board/?stage=pending_review":   (None, None, 1,    1,    1,    0,    1,    1),
    "/api/assignments/":                  (1,    0,    0,    0,    0,    0,    1,    1),
    "/api/exceptions/":                   (1,    0,    1,    1,    1,    0,    1,    1),
    "/api/pool/":                         (None, None, None, None, None, 0,    1,    1),
    "/api/reviews/":                      (None, None, None, None, 1,    0,    1,    1),
    "/api/alerts/":                       (None, None, None, None, None, 0,    1,    1),
    "/":                                  (1,    0,    1,    1,    1,    0,    1,    1),
    "/orders/export.csv":                 (1,    0,    1,    1,    1,    0,    1,    1),
}
# fmt: on


def test_every_list_leaves_out_what_is_not_the_readers(world):
    order, offer, case = world.order(), world.assignment(), world.case()
    review, alert = world.review(), world.alert()
    # what stands for the object in each list: an id in the JSON, the order's tag in a page
    wanted = {
        "/api/orders/": order.pk,
        "/api/board/?stage=pending_review": order.pk,
        "/api/assignments/": offer.pk,
        "/api/exceptions/": case.pk,
        "/api/pool/": order.pool_entry.pk,
        "/api/reviews/": review.pk,
        "/api/alerts/": alert.pk,
        "/": order.tag,
        "/orders/export.csv": order.tag,
    }
    got, want = {}, {}
    for role_index, role in enumerate(ROLES[1:]):
        client = client_as(world, role)
        for url, cells in LISTS.items():
            response = client.get(url)
            if response.status_code == 403:
                got[(url, role)] = None
            elif url.startswith("/api/"):
                body = response.json()
                items = body.get("results", body.get("cards", body))
                got[(url, role)] = int(wanted[url] in [item["id"] for item in items])
            else:
                content = b"".join(response.streaming_content) if response.streaming else response.content
                got[(url, role)] = int(wanted[url] in content.decode("utf-8-sig"))
            want[(url, role)] = cells[role_index]
    wrong = {key: (got[key], want[key]) for key in got if got[key] != want[key]}
    assert not wrong, f"(list, role): (got, want) {wrong}"


def test_another_reviewers_review_does_not_exist_for_a_reviewer(world):
    mine, theirs = world.review(), world.review(reviewer="agent")
    client = client_as(world, "risk_reviewer")
    for review, status in [(mine, 200), (theirs, 404)]:
        assert client.get(f"/api/reviews/{review.pk}/").status_code == status
        assert client.get(f"/risk/reviews/{review.pk}/").status_code == status
    decided = client.post(f"/api/reviews/{theirs.pk}/decide/", {"decision": "investigate"}, format="json")
    missing = client.post("/api/reviews/999999/decide/", {"decision": "investigate"}, format="json")
    # Not theirs reads exactly like never existed: no hint that the id is taken.
    assert decided.status_code == missing.status_code == 404
    assert decided.content.decode() == missing.content.decode().replace("999999", str(theirs.pk))
    theirs.refresh_from_db()
    assert theirs.state == Review.State.OPEN
    listed = [r["id"] for r in client.get("/api/reviews/").json()["results"]]
    assert listed == [mine.pk]


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
    order = world.order()
    response = client_as(world, role).post(f"/api/orders/{order.pk}/transition/", {"to": to}, format="json")
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
    order = world.order()
    value = "浙江省杭州市西湖区文三路90号" if field == "address" else "改了"
    response = client_as(world, role).patch(f"/api/orders/{order.pk}/", {field: value}, format="json")
    assert response.status_code == status, response.content
    order.refresh_from_db()
    assert (getattr(order, field) == value) == (status == 200)
