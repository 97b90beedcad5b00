"""Generated requests against every operation of /api/schema/ (schemathesis), on the demo data:
no input gives a 5xx, and every answer — status, content type, headers, body — is one the schema
documents. Run as a supervisor (who may do almost everything) and as an agent (who is refused
most things), so both the working answers and the refusals are checked against the schema."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from io import StringIO

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.test import TestCase, override_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.core.failures import AcceptedNegativeData
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import (
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
)

from agents.models import Skill
from dashboards import defaults as dashboards_defaults
from dashboards.models import Alert, Notification, NotificationTemplate
from dispatch.models import Assignment, Inquiry
from dispatch.services import inquiry_create
from orders import defaults as orders_defaults
from orders import outbound, sla_policies
from orders.models import Channel, ExceptionCase, ExceptionType, Order, SlaPolicy
from orders.states import Role
from riskcontrol import defaults as risk_defaults
from riskcontrol import selectors as risk_selectors
from riskcontrol.models import Review, RiskPolicy, Rule
from tests.factories import token_for

APP = get_wsgi_application()


def _schema(*phases: str):
    loaded = schemathesis.openapi.from_wsgi("/api/schema/", APP)
    loaded.config.phases.update(phases=list(phases))
    loaded.hook(flatmap_path_parameters)
    return loaded


# Bounded and the same on every run: CI must not find a new failure on a random Tuesday.
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    # Each example runs in its own savepoint (see `call_in_savepoint`), so the function-scoped
    # `db` fixture being shared by a test's examples leaks nothing between them.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)

# Ids of stored rows, by path parameter; filled by `demo`. Half the generated ids are swapped
# for one of these, so requests reach real orders, offers, reviews and cases, not only 404s.
REAL_IDS: dict[str, list[int | str]] = {}
TOKENS: dict[str, str] = {}
EXAMPLES: Counter[str] = Counter()

# A 400 to a request the schema calls valid is a schema that says too little — except for rules
# no schema can state: a code must name a stored channel, type or team; a field is needed only
# together with another one. Each operation lists the fields it may refuse for such reasons.
_STORED_FILTERS = {"channel", "region", "team", "agent"}  # codes and usernames that must exist
UNSTATABLE: dict[str, set[str]] = {
    "GET /api/board/": {*_STORED_FILTERS, "cursor"},  # a cursor the board gave out
    "GET /api/board/counts/": _STORED_FILTERS,
    "GET /api/board/cards/": _STORED_FILTERS,
    "POST /api/inquiries/": {"channel"},
    # external_id is judged after normalising (NFKC, zero-width characters and edge spaces
    # go), which can shorten it: 200 characters are taken, at most 128 kept.
    "POST /api/orders/": {"channel", "external_id"},
    "POST /api/orders/{order_id}/exceptions/": {"type"},  # an active exception type
    # The service judges blankness after trimming, so every caller gets the same words.
    "POST /api/exceptions/{case_id}/resolve/": {"resolution"},
    "PATCH /api/orders/{order_id}/": {"non_field_errors"},  # something besides the reason
    "POST /api/reviews/{review_id}/decide/": {"blacklist", "blacklist_days"},  # confirmed only
}


def flatmap_path_parameters(context, path_parameters):
    if not isinstance(path_parameters, dict) or not path_parameters:
        return st.just(path_parameters)
    real = {name: REAL_IDS.get(name) for name in path_parameters}
    if not all(real.values()):
        return st.just(path_parameters)
    stored = st.fixed_dictionaries({name: st.sampled_from(ids) for name, ids in real.items()})
    return st.one_of(st.just(path_parameters), stored)


def _error_fields(response) -> set[str]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {"<not json>"}
    if not isinstance(body, dict):
        return {"<not an object>"}
    if isinstance(body.get("errors"), dict):
        return set(body["errors"])
    return set(body) - {"code", "detail"}


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def schema_valid_input_is_accepted(ctx, response, case):
    """positive_data_acceptance, except a 400 that names only fields in UNSTATABLE, or one to
    text holding NUL, which no field takes (PostgreSQL cannot store it; DRF says so)."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if response.status_code != 400:
            raise
        if _has_nul([case.body, case.query, case.path_parameters]):
            return None
        fields = _error_fields(response)
        if fields and fields <= UNSTATABLE.get(case.operation.label, set()):
            return None
        raise


def schema_violating_input_is_refused(ctx, response, case):
    """negative_data_rejection, except the batch: each order in it is answered on its own, so a
    malformed one is a `rejected` result in a 200 (the valid ones are stored)."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        batch = case.operation.label == "POST /api/orders/batch/" and response.status_code == 200
        if batch and json.loads(response.content)["rejected"] >= 1:
            return None
        raise


# The supervisor's pass also runs the coverage phase (boundary values, every enum member, each
# parameter left out or of the wrong type, undeclared methods); most of the agent's requests
# are refused at the door, where fuzzing alone is enough.
schema = _schema("examples", "coverage", "fuzzing")
agent_schema = _schema("examples", "fuzzing")


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker):
    """The demo data (300 orders through the real services, with offers, reviews, exceptions,
    alerts and notifications), loaded once for the module in a transaction rolled back at the
    end; each test nests in it as a savepoint, each example in a savepoint of its own."""
    # As Django's test client does: a request must not close the connection that holds the
    # module's transaction (schemathesis calls the WSGI app directly).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    started = time.monotonic()
    try:
        with (
            django_db_blocker.unblock(),
            override_settings(
                PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
                CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
            ),
            transaction.atomic(),
        ):
            _load_demo()
            print(f"demo data in {time.monotonic() - started:.1f} s")
            yield
            transaction.set_rollback(True)
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
        _clear_caches()
    by_role = Counter(key.split(" ", 1)[0] for key in EXAMPLES.elements())
    print(f"{sum(EXAMPLES.values())} examples over {len(EXAMPLES)} operations and roles: {dict(by_role)}")


def _clear_caches() -> None:
    # The rules, regions, warehouses and SLA policies the demo adds are rolled back at the end:
    # no later test may find them cached.
    risk_selectors.clear_caches()
    sla_policies.clear_sla_cache()
    outbound.clear_subscription_cache()


def _load_demo() -> None:
    # What the data migrations install, which a transactional test before this module may
    # have flushed (tests/conftest.py).
    for role in Role:
        if role is not Role.SYSTEM:  # a part of the software, never a person's group
            Group.objects.get_or_create(name=role.value)
    orders_defaults.install_defaults(SlaPolicy, ExceptionType)
    dashboards_defaults.install_defaults(NotificationTemplate)
    risk_defaults.install_defaults(Rule, RiskPolicy, Skill)
    _clear_caches()
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("load_demo", stdout=StringIO())
        channel = Channel.objects.order_by("code").first()
        for n, text in enumerate(["发票怎么开？", "羽绒服能机洗吗", "退货地址是哪里"]):
            inquiry_create(channel=channel, account_id=f"fuzz{n}", customer_name="", text=text, vip=n == 0)
    offered = Assignment.objects.filter(state=Assignment.State.OFFERED).select_related("agent__user")
    REAL_IDS.update(
        order_id=list(Order.objects.order_by("pk").values_list("pk", flat=True)[::10]),
        assignment_id=[
            *offered.values_list("pk", flat=True),
            *Assignment.objects.order_by("pk").values_list("pk", flat=True)[:5],
        ],
        case_id=list(ExceptionCase.objects.values_list("pk", flat=True)),
        review_id=list(Review.objects.values_list("pk", flat=True)),
        alert_id=list(Alert.objects.order_by("pk").values_list("pk", flat=True)[:10]),
        notification_id=list(Notification.objects.order_by("pk").values_list("pk", flat=True)[:20]),
        inquiry_id=list(Inquiry.objects.values_list("pk", flat=True)),
        channel_code=list(Channel.objects.values_list("code", flat=True)),
    )
    # The agent holds a live offer, so accept and reject can succeed for them.
    TOKENS.update(
        supervisor=token_for(User.objects.get(username="supervisor")),
        agent=token_for(offered.first().agent.user),
    )


AUTH_ENFORCED: set[str] = set()


def auth_is_enforced(ctx, response, case):
    """ignored_auth (the same request without and with a wrong token must be refused) once per
    operation and role, as schemathesis' own runner does: enforcement is the operation's, not
    the example's, and the probes would otherwise double the requests."""
    key = f"{response.request.headers.get('Authorization')} {case.operation.label}"
    if key in AUTH_ENFORCED:
        return None
    result = ignored_auth(ctx, response, case)
    if 200 <= response.status_code < 300:
        AUTH_ENFORCED.add(key)
    return result


def call_in_savepoint(case, role: str) -> None:
    """One example: the request, the on-commit work it schedules (tasks run eagerly, as
    CELERY_TASK_ALWAYS_EAGER has it) and every check, then everything rolled back."""
    EXAMPLES[f"{role} {case.operation.label}"] += 1
    with transaction.atomic():
        with TestCase.captureOnCommitCallbacks(execute=True):
            case.call_and_validate(
                headers={"Authorization": f"Token {TOKENS[role]}", "Accept-Language": "en"},
                excluded_checks=[positive_data_acceptance, negative_data_rejection, ignored_auth],
                additional_checks=[
                    schema_valid_input_is_accepted,
                    schema_violating_input_is_refused,
                    auth_is_enforced,
                ],
            )
        transaction.set_rollback(True)


@schema.parametrize()
@FUZZ
def test_no_generated_request_as_a_supervisor_gets_a_5xx_or_an_undocumented_answer(case, demo, db):
    call_in_savepoint(case, "supervisor")


@agent_schema.parametrize()
@settings(FUZZ, max_examples=15)
def test_no_generated_request_as_an_agent_gets_a_5xx_or_an_undocumented_answer(case, demo, db):
    call_in_savepoint(case, "agent")


# --- What the generated requests found, kept as plain cases -----------------------------------


def test_a_date_filter_with_an_offset_postgresql_refuses_is_compared_in_utc(api):
    # -16:34 is valid ISO 8601, but PostgreSQL takes offsets up to ±15:59: this was a 500.
    assert api.get("/api/orders/", {"created_before": "3103-03-27T17:01:32.5-16:34"}).status_code == 200
    late = api.get("/api/orders/", {"created_after": "9999-12-31T23:00:00-12:00"})
    assert late.status_code == 400 and list(late.json()) == ["created_after"]


def test_text_holding_nul_is_a_400_naming_the_field_not_a_500(api, jd):
    board = api.get("/api/board/counts/", {"channel": "jd\x00", "q": "a\x00b"})
    assert board.status_code == 400 and set(board.json()["errors"]) == {"channel", "q"}
    inquiry = api.post("/api/inquiries/", {"channel": "jd\x00", "text": "发票怎么开"}, format="json")
    assert inquiry.status_code == 400 and list(inquiry.json()) == ["channel"]
    assert not Inquiry.objects.filter(text="发票怎么开").exists()


def test_superscript_digits_are_not_numbers_to_the_board_or_the_webhook(api, client, jd):
    # "²".isdigit() is true and int("²") raises: each of these was a 500.
    assert api.get("/api/board/cards/", {"ids": "12,²"}).json()["errors"].keys() == {"ids"}
    assert api.get("/api/board/", {"limit": "²"}).json()["errors"].keys() == {"limit"}
    hook = client.post(
        "/hooks/jd/",
        b"{}",
        content_type="application/json",
        headers={"X-Paidan-Timestamp": "²", "X-Paidan-Signature": "sha256=00", "X-Paidan-Event-Id": "e1"},
    )
    assert hook.status_code == 401 and hook.json()["code"] == "bad_timestamp"


def test_a_board_cursor_naming_no_moment_is_a_400(api):
    forged = base64.urlsafe_b64encode(json.dumps(["2026-13-01T00:00:00+00:00", 5]).encode()).decode()
    response = api.get("/api/board/", {"stage": "picking", "cursor": forged})
    assert response.status_code == 400 and list(response.json()["errors"]) == ["cursor"]


def test_every_refusal_carries_a_code_and_unknown_api_urls_answer_json(api, client):
    anonymous = client.get("/api/orders/")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    missing = api.get("/api/orders/0/")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    for url in ("/api/orders/abc/", "/hooks/not a channel/"):
        response = api.get(url)
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
        assert response.json()["code"] == "not_found"


def test_every_operation_documents_the_errors_any_request_may_get(api):
    """Not only what each view raises: 503 (database down, config.middleware) on everything,
    401 wherever a token is needed, 429 with Retry-After where a rate applies."""
    paths = api.get("/api/schema/", {"format": "json"}).json()["paths"]
    operations = [
        (f"{method.upper()} {path}", op) for path, item in paths.items() for method, op in item.items()
    ]
    assert len(operations) >= 36
    for label, operation in operations:
        responses = operation["responses"]
        assert "Retry-After" in responses["503"]["headers"], label
        assert responses["503"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
        if operation.get("security") != []:  # a token or a session is needed
            assert "401" in responses, label
    webhook = paths["/hooks/{channel_code}/"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "429", "503"} <= set(webhook)
    assert "Retry-After" in webhook["429"]["headers"]


def test_an_empty_repeatable_choice_is_left_out_like_every_other_empty_parameter(api):
    for url in (
        "/api/orders/?stage=",
        "/api/assignments/?state=",
        "/api/pool/?state=",
        "/api/reviews/?state=",
    ):
        assert api.get(url).status_code == 200, url
    assert api.get("/api/orders/?stage=nope").status_code == 400


def test_the_schema_says_a_client_ip_is_an_address_as_the_api_does(api):
    schema = api.get("/api/schema/?format=json").json()
    client_ip = schema["components"]["schemas"]["OrderInRequest"]["properties"]["client_ip"]
    assert {"format": "ipv4"} in client_ip["anyOf"] and {"format": "ipv6"} in client_ip["anyOf"]
