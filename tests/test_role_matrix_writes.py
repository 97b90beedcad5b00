"""The write half of the role matrix: every unsafe method of every URL × every role → the
status it must get and whether the write happened. Each role works on a fresh object (an
order of `agent`'s in the south, an offer to `agent`, a review taken by `risk_reviewer` …),
so one role's success never changes the next role's answer. And the test that keeps both
halves honest: every URL pattern of the project and every method it accepts has a row."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Agent, Rating
from dashboards.models import Alert, Notification
from dispatch.models import Assignment, DispatchPolicy, Inquiry, PoolEntry, SimulationRun
from orders.models import ExceptionCase, ImportJob, Order
from orders.webhooks import sign
from riskcontrol.models import Review
from tests.factories import PASSWORD, order_payload
from tests.test_imports import csv_bytes, zh_row
from tests.test_role_matrix import (
    MATRIX,
    ROLES,
    SZ,
    World,
    build_world,
    client_as,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(jd, make_user, settings) -> World:
    return build_world(jd, make_user, settings)


X = "302x"  # a form that redirects back with an error message and writes nothing

# (method, path) → expected status per role, in ROLES order. 2xx, and 302 from a form, mean
# the write happened; 302 for anonymous is the login page, and X a refusal told as a message
# on the page it redirects to (the same words for another region's object as for none).
# 401: API without credentials; 403: the role may not; 404: the object is not theirs.
# fmt: off
WRITES = {
    #                                                    anon agnt oagt ware cs   risk osup sup  admn
    ("POST", "/login/"):                                (302, 302, 302, 302, 302, 302, 302, 302, 302),
    ("PUT", "/login/"):                                 (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/logout/"):                               (302, 302, 302, 302, 302, 302, 302, 302, 302),
    ("POST", "/i18n/setlang/"):                         (302, 302, 302, 302, 302, 302, 302, 302, 302),
    ("POST", "/hooks/{channel}/"):                      (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/orders/{order}/"):                       (302, 302, 404, 403, 302, 403, 404, 302, 302),
    ("POST", "/imports/"):                              (302, 403, 403, 403, 403, 403, 302, 302, 302),
    ("POST", "/dispatch/manual/"):                      (302, 403, 403, 403, 403, 403,   X, 302, 302),
    ("POST", "/dispatch/simulations/"):                 (302, 403, 403, 403, 403, 403, 302, 302, 302),
    ("POST", "/risk/reviews/{review}/"):                (302, 403, 403, 403, 403, 302, 404, 302, 302),
    ("POST", "/alerts/{alert}/ack/"):                   (302, 403, 403, 403, 403, 403,   X, 302, 302),
    ("POST", "/api/orders/"):                           (401, 403, 403, 403, 201, 403, 201, 201, 201),
    ("POST", "/api/orders/batch/"):                     (401, 403, 403, 403, 200, 403, 200, 200, 200),
    ("PATCH", "/api/orders/{order}/"):                  (401, 200, 404, 403, 200, 403, 404, 200, 200),
    ("POST", "/api/orders/{order}/transition/"):        (401, 200, 404, 403, 200, 403, 404, 200, 200),
    ("POST", "/api/orders/{order}/exceptions/"):        (401, 201, 404, 403, 201, 403, 404, 201, 201),
    ("POST", "/api/exceptions/{case}/resolve/"):        (401, 200, 404, 403, 200, 403, 404, 200, 200),
    ("POST", "/api/orders/{order}/assign/"):            (401, 403, 403, 403, 403, 403, 404, 200, 200),
    ("POST", "/api/orders/{order}/rating/"):            (401, 403, 403, 403, 201, 403, 404, 201, 201),
    ("POST", "/api/assignments/{assignment}/accept/"):  (401, 200, 404, 403, 403, 404, 403, 403, 403),
    ("POST", "/api/assignments/{assignment}/reject/"):  (401, 200, 404, 403, 403, 404, 403, 403, 403),
    ("POST", "/api/inquiries/"):                        (401, 403, 403, 403, 201, 403, 201, 201, 201),
    ("POST", "/api/inquiries/{inquiry}/close/"):        (401, 200, 404, 403, 403, 404, 200, 200, 200),
    ("POST", "/api/inquiries/{inquiry}/assign/"):       (401, 403, 403, 403, 403, 403, 200, 200, 200),
    ("POST", "/api/agents/me/status/"):                 (401, 200, 200, 403, 403, 200, 403, 403, 403),
    ("POST", "/api/agents/me/location/"):               (401, 200, 200, 403, 403, 200, 403, 403, 403),
    ("POST", "/api/notifications/read-all/"):           (401, 200, 200, 200, 200, 200, 200, 200, 200),
    ("POST", "/api/notifications/{notification}/read/"):(401, 200, 404, 404, 404, 404, 404, 404, 404),
    ("POST", "/api/reviews/{review}/decide/"):          (401, 403, 403, 403, 403, 200, 404, 200, 200),
    ("POST", "/api/alerts/{alert}/ack/"):               (401, 403, 403, 403, 403, 403, 404, 200, 200),
}
# fmt: on

# How each row is exercised: make the role's own fresh object, send the row's method to the
# row's path with a body that would succeed, and say whether the write happened (None: the
# row changes nothing that one can count, such as a login).
Send = Callable[..., object]
EXERCISES: dict[tuple[str, str], Callable[[World, str, Send], tuple[object, bool | None]]] = {}


def exercise(method: str, path: str):
    def register(fn):
        EXERCISES[(method, path)] = fn
        return fn

    return register


@exercise("POST", "/login/")
def _login(w, role, send):
    return send(body={"username": "ag", "password": PASSWORD}), None


@exercise("PUT", "/login/")
def _login_put(w, role, send):
    # Django's FormView answers PUT as POST, but a PUT body is not form data: the form is shown.
    return send(body={"username": "ag", "password": PASSWORD}), None


@exercise("POST", "/logout/")
def _logout(w, role, send):
    return send(), None


@exercise("POST", "/i18n/setlang/")
def _setlang(w, role, send):
    return send(body={"language": "zh-hans", "next": "/"}), None


@exercise("POST", "/hooks/{channel}/")
def _webhook(w, role, send):
    # The sender's signature is the credential, whoever's session the request carries.
    external_id = f"HOOK-{w.next()}"
    payload = order_payload(external_id=external_id, address=SZ)
    payload.pop("channel")
    body = json.dumps(payload, ensure_ascii=False).encode()
    stamp = str(int(time.time()))
    response = send(
        channel=w.channel.code,
        raw=body,
        headers={
            "HTTP_X_PAIDAN_TIMESTAMP": stamp,
            "HTTP_X_PAIDAN_SIGNATURE": sign(w.channel.webhook_secret, stamp, body),
            "HTTP_X_PAIDAN_EVENT_ID": external_id,
        },
    )
    return response, Order.objects.filter(external_id=external_id).exists()


def _order_form(order: Order, note: str) -> dict:
    # Every field a role may be shown; the form keeps the ones the reader's role may edit.
    return {
        "customer_name": order.customer_name,
        "customer_phone": order.customer_phone,
        "address": order.address,
        "note": note,
        "reason": "客户来电",
    }


@exercise("POST", "/orders/{order}/")
def _order_edit_form(w, role, send):
    order = w.order()
    response = send(order=order.pk, body=_order_form(order, "改了"))
    order.refresh_from_db()
    return response, order.note == "改了"


@exercise("POST", "/imports/")
def _import_upload(w, role, send):
    before = ImportJob.objects.count()
    upload = SimpleUploadedFile("orders.csv", csv_bytes([zh_row(f"IMP-{w.next()}")]), "text/csv")
    response = send(body={"channel": w.channel.pk, "file": upload}, fmt="multipart")
    return response, ImportJob.objects.count() == before + 1


@exercise("POST", "/dispatch/manual/")
def _manual_assign(w, role, send):
    order = w.order(owner=None)
    PoolEntry.objects.filter(order=order).update(state=PoolEntry.State.ESCALATED)
    body = {"order": order.pk, "agent": w.agents["agent"].pk, "action": "assign"}
    response = send(body=body)
    return response, Assignment.objects.filter(order=order, state="accepted").exists()


@exercise("POST", "/dispatch/simulations/")
def _simulation(w, role, send):
    policy, _created = DispatchPolicy.objects.get_or_create(name="draft", defaults={"is_active": False})
    week = (timezone.localdate() - timedelta(days=8)).isoformat()
    before = SimulationRun.objects.count()
    response = send(body={"policy": policy.pk, "week": week, "seed": 1})
    return response, SimulationRun.objects.count() == before + 1


@exercise("POST", "/api/orders/")
def _ingest(w, role, send):
    external_id = f"API-{w.next()}"
    response = send(body=order_payload(external_id=external_id, address=SZ))
    return response, Order.objects.filter(external_id=external_id).exists()


@exercise("POST", "/api/orders/batch/")
def _ingest_batch(w, role, send):
    external_id = f"BATCH-{w.next()}"
    response = send(body={"orders": [order_payload(external_id=external_id, address=SZ)]})
    return response, Order.objects.filter(external_id=external_id).exists()


@exercise("PATCH", "/api/orders/{order}/")
def _order_patch(w, role, send):
    order = w.order()
    response = send(order=order.pk, body={"note": "改了"})
    order.refresh_from_db()
    return response, order.note == "改了"


@exercise("POST", "/api/orders/{order}/transition/")
def _transition(w, role, send):
    order = w.order()
    response = send(order=order.pk, body={"to": "picking"})
    order.refresh_from_db()
    return response, order.stage == "picking"


@exercise("POST", "/api/orders/{order}/exceptions/")
def _raise_exception(w, role, send):
    order = w.order()
    response = send(order=order.pk, body={"type": "damaged", "note": "箱子破了"})
    return response, ExceptionCase.objects.filter(order=order).exists()


@exercise("POST", "/api/exceptions/{case}/resolve/")
def _resolve_exception(w, role, send):
    case = w.case()
    response = send(case=case.pk, body={"resolution": "已补发"})
    case.refresh_from_db()
    return response, case.status == ExceptionCase.Status.RESOLVED


@exercise("POST", "/api/orders/{order}/assign/")
def _assign_order(w, role, send):
    order = w.order(owner=None)
    response = send(order=order.pk, body={"agent": w.agents["agent"].pk})
    return response, Assignment.objects.filter(order=order, manual=True).exists()


@exercise("POST", "/api/orders/{order}/rating/")
def _rate(w, role, send):
    order = w.order()
    response = send(order=order.pk, body={"score": 5})
    return response, Rating.objects.filter(order=order).exists()


@exercise("POST", "/api/assignments/{assignment}/accept/")
def _accept(w, role, send):
    offer = w.assignment()
    response = send(assignment=offer.pk)
    offer.refresh_from_db()
    return response, offer.state == Assignment.State.ACCEPTED


@exercise("POST", "/api/assignments/{assignment}/reject/")
def _reject(w, role, send):
    offer = w.assignment()
    response = send(assignment=offer.pk, body={"reason": "太远"})
    offer.refresh_from_db()
    return response, offer.state == Assignment.State.REJECTED


@exercise("POST", "/api/inquiries/")
def _inquiry_create(w, role, send):
    text = f"羽绒服能洗吗 #{w.next()}"
    response = send(body={"channel": w.channel.code, "text": text})
    return response, Inquiry.objects.filter(text=text).exists()


@exercise("POST", "/api/inquiries/{inquiry}/close/")
def _inquiry_close(w, role, send):
    inquiry = w.inquiry(held=True)
    response = send(inquiry=inquiry.pk)
    inquiry.refresh_from_db()
    return response, inquiry.state == Inquiry.State.CLOSED


@exercise("POST", "/api/inquiries/{inquiry}/assign/")
def _inquiry_assign(w, role, send):
    inquiry = w.inquiry(held=False)
    response = send(inquiry=inquiry.pk, body={"agent": w.agents["agent"].pk})
    return response, Assignment.objects.filter(inquiry=inquiry, manual=True).exists()


@exercise("POST", "/api/agents/me/status/")
def _agent_status(w, role, send):
    response = send(body={"status": "break"})
    agent = Agent.objects.filter(user=w.users.get(role)).first()
    return response, agent is not None and agent.status == "break"


@exercise("POST", "/api/agents/me/location/")
def _agent_location(w, role, send):
    response = send(body={"lat": 22.54, "lng": 113.95})
    agent = Agent.objects.filter(user=w.users.get(role)).first()
    return response, agent is not None and agent.latitude is not None


@exercise("POST", "/api/notifications/read-all/")
def _read_all(w, role, send):
    # Everyone has an inbox; only their own is marked (the row below proves the others').
    return send(), None


@exercise("POST", "/api/notifications/{notification}/read/")
def _read_one(w, role, send):
    notification = w.notification()
    response = send(notification=notification.pk)
    return response, Notification.objects.get(pk=notification.pk).read_at is not None


@exercise("POST", "/risk/reviews/{review}/")  # the review page's form: the same decision
@exercise("POST", "/api/reviews/{review}/decide/")
def _decide(w, role, send):
    review = w.review()
    response = send(review=review.pk, body={"decision": "investigate", "note": "查一下"})
    review.refresh_from_db()
    return response, review.state == Review.State.INVESTIGATING


@exercise("POST", "/alerts/{alert}/ack/")  # the alerts page's form: the same acknowledgement
@exercise("POST", "/api/alerts/{alert}/ack/")
def _alert_ack(w, role, send):
    alert = w.alert()
    response = send(alert=alert.pk)
    return response, Alert.objects.get(pk=alert.pk).acknowledged_at is not None


def sender(client: APIClient, method: str, path: str, *, csrf_token: str | None = None) -> Send:
    """Send the row's method to the row's path, filled in; API bodies as JSON with the CSRF
    token (if any) in its header, as the pages' scripts send it; forms as forms, the token in
    the form's field."""

    def send(*, body: dict | None = None, fmt: str | None = None, raw: bytes | None = None,
             headers: dict | None = None, **ids: object):  # fmt: skip
        url = path.format(**ids)
        call = getattr(client, method.lower())
        headers = dict(headers or {})
        if raw is not None:
            return call(url, raw, content_type="application/json", **headers)
        api = url.startswith("/api/")
        body = dict(body or {})
        if csrf_token and api:
            headers["HTTP_X_CSRFTOKEN"] = csrf_token
        elif csrf_token:
            body["csrfmiddlewaretoken"] = csrf_token
        return call(url, body, format=fmt or ("json" if api else "multipart"), **headers)

    return send


def status_of(cell: int | str) -> int:
    return int(str(cell)[:3])


def expected_write(cell: int | str, role: str) -> bool:
    if cell == X:
        return False
    return cell in (200, 201, 204) or (cell == 302 and role != "anonymous")


@pytest.mark.parametrize(("method", "path"), list(WRITES), ids=[f"{m} {p}" for m, p in WRITES])
def test_every_write_answers_each_role_as_the_matrix_says_and_writes_only_when_allowed(world, method, path):
    run = EXERCISES[(method, path)]
    wrong = {}
    for role, cell in zip(ROLES, WRITES[(method, path)], strict=True):
        response, wrote = run(world, role, sender(client_as(world, role), method, path))
        status = status_of(cell)
        problems = []
        if response.status_code != status:
            problems.append(f"status {response.status_code}, want {status}: {response.content[:200]!r}")
        if wrote is not None and wrote != expected_write(cell, role):
            problems.append(f"wrote={wrote}, want {expected_write(cell, role)}")
        if status == 302 and role == "anonymous" and path != "/hooks/{channel}/":
            location = response.headers["Location"]
            if not location.startswith("/login/") and path not in ("/login/", "/logout/", "/i18n/setlang/"):
                problems.append(f"anonymous sent to {location}, not the login page")
        if problems:
            wrong[role] = problems
    assert not wrong, wrong


def test_a_delivery_never_rewrites_or_reads_back_an_order_the_sender_may_not_see(world, make_user):
    # given a south order of `agent`'s, delivered again with a newer timestamp, or an older one
    # (which would change nothing but answer with the stored order)
    integration = make_user("shop-sync")
    integration.user_permissions.add(Permission.objects.get(codename="add_order"))
    world.users["integration"] = integration
    got = {}
    for role in ("other_supervisor", "supervisor", "customer_service", "admin", "integration"):
        order = world.order()
        newer = order_payload(external_id=order.external_id, address=SZ, note=f"{role} 改的",
                              source_updated_at="2026-11-21T10:00:00+08:00")  # fmt: skip
        older = order_payload(
            external_id=order.external_id, address=SZ, source_updated_at="2026-11-01T10:00:00Z"
        )
        client = client_as(world, role)
        one = client.post("/api/orders/", newer, format="json")
        stale = client.post("/api/orders/", older, format="json")
        batch = client.post("/api/orders/batch/", {"orders": [older]}, format="json").json()["results"][0]
        order.refresh_from_db()
        got[role] = (one.status_code, stale.status_code, batch["status"], order.note == f"{role} 改的")
        if role == "other_supervisor":
            # then nothing of the stored order comes back: not its owner, customer or stage
            assert one.json()["code"] == "not_yours"
            assert "owner" not in one.content.decode() and "王小明" not in stale.content.decode()
            assert batch["id"] is None
    assert got == {
        "other_supervisor": (400, 400, "rejected", False),
        "supervisor": (200, 200, "ignored", True),
        "customer_service": (200, 200, "ignored", True),
        "admin": (200, 200, "ignored", True),
        "integration": (200, 200, "ignored", True),  # delivers for its channel, sees nothing else
    }


def test_another_regions_alert_or_order_on_a_form_reads_like_one_that_does_not_exist(world):
    # The forms redirect back with a message (X in the matrix); the message must not tell a
    # taken id from a free one.
    client = client_as(world, "other_supervisor")
    alert, order = world.alert(), world.order(owner=None)

    def said(url: str, body: dict | None = None) -> str:
        response = client.post(url, body or {}, follow=True)
        (message,) = [str(m) for m in response.context["messages"]]
        return message

    assert said(f"/alerts/{alert.pk}/ack/") == said("/alerts/999999/ack/").replace("999999", str(alert.pk))
    manual = {"agent": world.agents["agent"].pk, "action": "assign"}
    theirs = said("/dispatch/manual/", {"order": order.pk, **manual})
    assert theirs == said("/dispatch/manual/", {"order": 999999, **manual}).replace("999999", str(order.pk))
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is None
    assert not Assignment.objects.filter(order=order).exists()


def test_every_write_row_says_how_it_is_exercised():
    assert set(EXERCISES) == set(WRITES)


# --- Completeness --------------------------------------------------------------------------
# Views whose methods their own answer does not declare (no Allow header): Django's own
# language switch, which acts only on POST.
UNDECLARED = {"i18n/setlang/": {"POST"}}
_SAMPLE = {"int": "1", "slug": "sample", "str": "sample", "path": "sample"}


def _routes(patterns, prefix: str = ""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _routes(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern)


def _sample_url(route: str) -> str:
    """A URL that resolves to `route`: each <converter:name> filled with a sample value."""
    import re

    return "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: _SAMPLE[m.group(1) or "str"], route)


def route_of(path: str) -> str:
    """The URL pattern a matrix path (placeholders, query and all) resolves to."""
    url = urlsplit(path.format_map(_Ones())).path
    return resolve(url).route


class _Ones(dict):
    def __missing__(self, key: str) -> str:
        return "1"


def test_every_url_pattern_and_every_method_it_accepts_has_a_row_in_the_matrix(world):
    """Add a URL or a method and this fails until the matrix says who may use it. Admin URLs
    are Django's admin, staff-only, with its own permission system; /admin/ has one row."""
    admin = client_as(world, "admin")
    accepted = {}
    for route in _routes(get_resolver().url_patterns):
        if route.startswith("admin/"):
            continue
        if route in UNDECLARED:
            accepted[route] = UNDECLARED[route]
            continue
        # A view answers OPTIONS with the methods it takes (Allow), or with 405 and Allow.
        allow = admin.options(_sample_url(route)).headers.get("Allow")
        assert allow, f"{route}: the view does not declare its methods (require_http_methods)"
        accepted[route] = {m.strip() for m in allow.split(",")} - {"HEAD", "OPTIONS"}
    have = {(route, method) for route, methods in accepted.items() for method in methods}
    rows = {(route_of(path), "GET") for path in MATRIX} | {(route_of(p), m) for m, p in WRITES}
    rows = {(route, method) for route, method in rows if not route.startswith("admin/")}
    assert sorted(have - rows) == [], "URL patterns and methods with no row in the matrix"
    assert sorted(rows - have) == [], "matrix rows for a URL or method that no longer exists"
