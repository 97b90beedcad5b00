"""CSRF on every form and every session-authenticated write.

Every template of ours with a POST form is known here (a new one fails the first test until
it is added); each such page, as every role that reaches it, renders every POST form with
the token; each form's endpoint refuses a post without the token (403, nothing written) and
takes it with the token, as a browser with cookies enforced would send it. The API: a
session-authenticated write without the X-CSRFToken header is refused by DRF's
SessionAuthentication, one with it works, and a token-authenticated one needs none. Webhooks
are exempt from CSRF because their signature is the credential: unsigned is refused."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.apps import apps
from django.conf import settings
from django.urls import resolve
from rest_framework.test import APIClient

from dispatch.models import Assignment, PoolEntry
from orders.models import Order
from tests.factories import order_payload, token_for
from tests.test_role_matrix import (
    MATRIX,
    ROLES,
    SZ,
    World,
    build_world,
    client_as,
)
from tests.test_role_matrix_writes import EXERCISES, WRITES, X, expected_write, route_of, sender, status_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(jd, make_user, settings) -> World:
    return build_world(jd, make_user, settings)


ADMIN_ACTION = "the pool's admin action “assign to an agent”"  # a page reached by a POST
# template with POST forms → the page that shows them (a MATRIX row: every role that gets 200
# there is checked) and how many POST forms the template holds. base.html's language switch
# and logout are on every page.
FORM_PAGES = {
    "base.html":                       ("/", 2),
    "registration/login.html":         ("/login/", 1),
    "dashboards/order_detail.html":    ("/orders/{order}/", 1),
    "dashboards/import_upload.html":   ("/imports/", 1),
    "dashboards/alerts.html":          ("/alerts/", 1),
    "dashboards/manual_queue.html":    ("/dispatch/manual/", 1),
    "dashboards/simulations.html":     ("/dispatch/simulations/", 1),
    "riskcontrol/review_detail.html":  ("/risk/reviews/{review}/", 1),
    "admin/dispatch/assign.html":      (ADMIN_ACTION, 1),
}  # fmt: skip
# The form endpoints among the write rows (the webhook is no form: it is exempt, see below).
FORM_WRITES = [(m, p) for m, p in WRITES if m == "POST" and not p.startswith(("/api/", "/hooks/"))]
API_WRITES = [(m, p) for m, p in WRITES if p.startswith("/api/")]


class PostForms(HTMLParser):
    """The POST forms of a page: action and the fields they send."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._open: dict | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self._open = {"action": a.get("action") or "", "fields": {}}
            if (a.get("method") or "get").lower() == "post":
                self.forms.append(self._open)
        elif self._open is not None and a.get("name"):
            self._open["fields"].setdefault(a["name"], a.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def template_dirs() -> list[Path]:
    ours = [Path(d) for d in settings.TEMPLATES[0]["DIRS"]]
    for app in apps.get_app_configs():
        path = Path(app.path) / "templates"
        # Our apps only (a virtualenv may sit inside the project): Django's admin and the
        # libraries test their own forms.
        mine = Path(app.path).is_relative_to(settings.BASE_DIR) and not Path(app.path).is_relative_to(
            sys.prefix
        )
        if path.is_dir() and mine:
            ours.append(path)
    return ours


def templates_with_post_forms() -> dict[str, int]:
    found = {}
    for root in template_dirs():
        for file in root.rglob("*.html"):
            count = len(PostForms(file.read_text()).forms)
            if count:
                found[file.relative_to(root).as_posix()] = count
    return found


def test_every_template_with_a_post_form_is_known_to_the_csrf_tests():
    assert templates_with_post_forms() == {name: count for name, (_page, count) in FORM_PAGES.items()}


def csrf_token(client: APIClient) -> str:
    """The token a page gives this client: the login page renders one for anybody."""
    client.get("/login/")
    return client.cookies[settings.CSRF_COOKIE_NAME].value


def admin_assign_page(world: World, client: APIClient):
    """The admin action's intermediate page, reached as an admin reaches it: a POST of the
    changelist's action form."""
    entry = PoolEntry.objects.get(order=world.order(owner=None))
    body = {
        "action": "assign_to_agent",
        "_selected_action": [entry.pk],
        "csrfmiddlewaretoken": csrf_token(client),
    }
    return client.post("/admin/dispatch/poolentry/", body), entry


def test_every_post_form_carries_the_csrf_token_for_every_role_that_sees_it(world):
    # given what makes each form appear: an open alert, an escalated pool entry, a review
    world.alert()
    PoolEntry.objects.filter(order=world.order(owner=None)).update(state=PoolEntry.State.ESCALATED)
    ids = {"order": world.order().pk, "review": world.review().pk}
    form_routes = {route_of(p) for _m, p in FORM_WRITES}
    pages = 0
    for template, (page, count) in FORM_PAGES.items():
        if page == ADMIN_ACTION:
            roles = ["admin"]
        else:
            roles = [role for role, status in zip(ROLES, MATRIX[page], strict=True) if status == 200]
        for role in roles:
            client = client_as(world, role, enforce_csrf_checks=True)
            if page == ADMIN_ACTION:
                response, _entry = admin_assign_page(world, client)
            else:
                response = client.get(page.format(**ids))
            assert response.status_code == 200, (template, role)
            if template not in {t.name for t in response.templates}:
                continue  # this role is shown the page without that form (nothing to edit)
            pages += 1
            forms = PostForms(response.content.decode()).forms
            assert len(forms) >= count, (template, role)
            for form in forms:
                action = urlsplit(form["action"] or response.request["PATH_INFO"]).path
                assert form["fields"].get("csrfmiddlewaretoken"), (template, role, action)
                route = resolve(action).route
                # each form posts to an endpoint whose refusal without the token is tested below
                assert route in form_routes or route.startswith("admin/"), (template, action)
    assert pages >= len(FORM_PAGES) + 10  # several roles per page, not a vacuous loop


def first_allowed(method: str, path: str) -> str:
    """The first role for whom the row's write happens (anonymous only for the login)."""
    return next(
        role
        for role, cell in zip(ROLES, WRITES[(method, path)], strict=True)
        if cell != X and (expected_write(cell, role) or (path == "/login/" and role == "anonymous"))
    )


@pytest.mark.parametrize(("method", "path"), FORM_WRITES, ids=[p for _m, p in FORM_WRITES])
def test_a_form_post_without_the_token_is_refused_and_with_it_works(world, method, path):
    role = first_allowed(method, path)
    client = client_as(world, role, enforce_csrf_checks=True)
    refused, wrote = EXERCISES[(method, path)](world, role, sender(client, method, path))
    assert refused.status_code == 403, refused.content[:300]
    assert b"CSRF" in refused.content
    assert wrote in (False, None)
    token = csrf_token(client)
    answered, wrote = EXERCISES[(method, path)](world, role, sender(client, method, path, csrf_token=token))
    want = status_of(WRITES[(method, path)][ROLES.index(role)])
    assert answered.status_code == want, answered.content[:300]
    assert wrote in (True, None)


def test_the_admin_action_form_refuses_a_post_without_the_token(world):
    client = client_as(world, "admin", enforce_csrf_checks=True)
    page, entry = admin_assign_page(world, client)
    (form,) = [f for f in PostForms(page.content.decode()).forms if f["fields"].get("apply") is not None]
    body = {**form["fields"], "_selected_action": [entry.pk], "agent": world.agents["agent"].pk}
    without = {k: v for k, v in body.items() if k != "csrfmiddlewaretoken"}
    assert client.post("/admin/dispatch/poolentry/", without).status_code == 403
    assert not Assignment.objects.filter(entry=entry).exists()
    assert client.post("/admin/dispatch/poolentry/", body).status_code == 302
    assert Assignment.objects.get(entry=entry).agent == world.agents["agent"]


@pytest.mark.parametrize(("method", "path"), API_WRITES, ids=[f"{m} {p}" for m, p in API_WRITES])
def test_a_session_api_write_needs_the_csrf_header_and_a_token_one_does_not(world, method, path):
    role = first_allowed(method, path)
    want = WRITES[(method, path)][ROLES.index(role)]
    run = EXERCISES[(method, path)]
    session = client_as(world, role, enforce_csrf_checks=True)
    refused, wrote = run(world, role, sender(session, method, path))
    assert refused.status_code == 403, refused.content[:300]
    assert "CSRF" in refused.json()["detail"]
    assert wrote in (False, None)
    answered, wrote = run(world, role, sender(session, method, path, csrf_token=csrf_token(session)))
    assert (answered.status_code, wrote in (True, None)) == (want, True), answered.content[:300]
    # an integration's token is not a browser's ambient credential: no CSRF check applies
    integration = APIClient(HTTP_ACCEPT_LANGUAGE="en", enforce_csrf_checks=True)
    integration.credentials(HTTP_AUTHORIZATION=f"Token {token_for(world.users[role])}")
    answered, wrote = run(world, role, sender(integration, method, path))
    assert (answered.status_code, wrote in (True, None)) == (want, True), answered.content[:300]


def test_webhooks_skip_csrf_but_refuse_an_unsigned_delivery(world):
    client = APIClient(enforce_csrf_checks=True)
    payload = order_payload(external_id="UNSIGNED-1", address=SZ)
    payload.pop("channel")
    response = client.post(
        f"/hooks/{world.channel.code}/",
        json.dumps(payload, ensure_ascii=False),
        content_type="application/json",
        HTTP_X_PAIDAN_EVENT_ID="evt-unsigned",
    )
    assert (response.status_code, response.json()["code"]) == (401, "signature_missing")
    assert not Order.objects.filter(external_id="UNSIGNED-1").exists()
    # and the signed one, through the same CSRF-enforcing client, is stored
    signed, wrote = EXERCISES[("POST", "/hooks/{channel}/")](
        world, "anonymous", sender(client, "POST", "/hooks/{channel}/")
    )
    assert (signed.status_code, wrote) == (200, True)
