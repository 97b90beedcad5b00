"""Risk reviews through the API and the pages: a held order reaches a reviewer through the
dispatch pool, and each of the three decisions does what it says; who may see and decide
which review; every bad input refused with its reason and nothing written; the monthly rule
report as a page and as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Skill
from dispatch.models import Assignment, PoolEntry
from dispatch.services import assignment_accept, assignment_reject, dispatch_tick
from orders.actors import system_actor
from orders.models import Order
from orders.services import order_ingest, order_ingest_batch
from riskcontrol.defaults import install_defaults
from riskcontrol.models import (
    BlacklistEntry,
    Review,
    ReviewDecision,
    RiskPolicy,
    Rule,
    RuleHit,
    RuleWeightChange,
)
from riskcontrol.selectors import clear_caches
from tests.factories import AgentFactory, ChannelFactory, UserFactory, order_payload, token_for

HELD_ADDRESS = "浙江省杭州市余杭区良渚街道临时仓A区12号"


# --- Given ------------------------------------------------------------------------------------
@pytest.fixture
def risk(db):
    """The default rules and thresholds, the review skill and the JD channel."""
    install_defaults(Rule, RiskPolicy, Skill)
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")


def reviewer(username: str):
    return AgentFactory(
        user=UserFactory(username=username, roles=["risk_reviewer"]),
        display_name=username,
        skills={"risk_review": 3},
    )


def held_order(external_id: str = "R-1", **overrides) -> Order:
    """An order whose address names a transit warehouse: the default rule holds it."""
    overrides.setdefault("address", HELD_ADDRESS)
    result = order_ingest(
        payload=order_payload(external_id=external_id, **overrides), actor=system_actor("test")
    )
    assert result.status == "created", result.errors
    order = Order.objects.get(pk=result.order.pk)
    assert order.stage == "quarantined"
    return order


def taken(agent, order: Order) -> Review:
    """The dispatch round offers the review task to `agent`, who accepts it."""
    dispatch_tick()
    offer = Assignment.objects.get(review__order=order, state="offered")
    assert offer.agent_id == agent.pk
    assignment_accept(assignment_id=offer.pk, agent=agent)
    review = Review.objects.get(order=order)
    assert review.agent_id == agent.pk
    return review


def api_for(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


def page_for(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def flatten(errors) -> list[str]:
    """DRF error messages, however nested (a list field's are keyed by position)."""
    if isinstance(errors, dict):
        return [m for value in errors.values() for m in flatten(value)]
    if isinstance(errors, list):
        return [m for value in errors for m in flatten(value)]
    return [str(errors)]


def decide_url(review: Review) -> str:
    return f"/api/reviews/{review.pk}/decide/"


def snapshot(order: Order) -> dict:
    """Everything a decision may write, to show a refused one wrote nothing."""
    review = Review.objects.get(order=order)
    order.refresh_from_db()
    return {
        "stage": order.stage,
        "review": (review.state, review.note, review.decided_at, review.decided_by_id),
        "decisions": ReviewDecision.objects.count(),
        "blacklist": BlacklistEntry.objects.count(),
        "outcomes": sorted(RuleHit.objects.filter(order=order).values_list("outcome", flat=True)),
        "events": order.events.count(),
        "assignments": sorted(Assignment.objects.filter(review=review).values_list("state", flat=True)),
    }


# --- The API: the three decisions ---------------------------------------------------------------
def test_confirmed_fraud_cancels_the_order_and_blacklists_what_was_asked(risk):
    # given a held order whose review a reviewer took from the pool
    agent = reviewer("shen")
    order = held_order()
    review = taken(agent, order)

    # when they confirm fraud and blacklist its IP and device for 30 days
    response = api_for(agent.user).post(
        decide_url(review),
        {
            "decision": "confirmed",
            "note": "同一人连续下单到临时仓",
            "blacklist": ["ip", "device"],
            "blacklist_days": 30,
        },
        format="json",
    )

    # then the review is closed as confirmed, the order cancelled, the hits learn the outcome
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "confirmed"
    assert body["order"]["stage"] == "cancelled"
    assert [d["decision"] for d in body["decisions"]] == ["confirmed"]
    assert body["decisions"][0]["blacklisted"] == ["ip", "device"]
    hit = RuleHit.objects.get(order=order)
    assert body["hits"] == [
        {
            "id": hit.pk,
            "rule": hit.rule_id,
            "rule_name": "中转仓/代收点地址",
            "kind": "address_keywords",
            "weight": 60.0,
            "explanation": hit.explanation,
            "outcome": "confirmed",
            "at": body["hits"][0]["at"],
        }
    ]
    assert "临时仓" in hit.explanation
    order.refresh_from_db()
    assert order.stage == "cancelled"
    review.refresh_from_db()
    assert (review.state, review.decided_by_id, review.note) == (
        "confirmed",
        agent.user_id,
        "同一人连续下单到临时仓",
    )
    # and exactly the two values asked for are blacklisted, until 30 days from now
    entries = {e.kind: e for e in BlacklistEntry.objects.all()}
    assert set(entries) == {"ip", "device"}
    assert entries["ip"].value == order.client_ip
    assert entries["device"].value == order.device_id
    for entry in entries.values():
        assert entry.source_order_id == order.pk and entry.created_by_id == agent.user_id
        assert abs(entry.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    # and the reviewer's task is done, their slot free
    assert Assignment.objects.get(review=review).state == "completed"
    assert PoolEntry.objects.get(review=review).state == "closed"
    # and it is all on the order's timeline, by the reviewer
    assert order.events.filter(kind="review", actor="shen").count() == 3  # decision + two blacklistings
    assert order.events.filter(kind="transition", to_stage="cancelled", actor="shen").exists()


def test_a_false_positive_releases_the_order_to_pending_review_and_the_pool(risk):
    agent = reviewer("shen")
    order = held_order()
    review = taken(agent, order)

    response = api_for(agent.user).post(
        decide_url(review), {"decision": "false_positive", "note": "老客户，仓库是自提点"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "false_positive"
    order.refresh_from_db()
    assert order.stage == "pending_review"
    assert list(RuleHit.objects.filter(order=order).values_list("outcome", flat=True)) == ["false_positive"]
    assert not BlacklistEntry.objects.exists()
    # and it waits in the dispatch pool as an ordinary order again
    entry = PoolEntry.objects.get(order=order)
    assert (entry.kind, entry.state) == ("order", "waiting")
    assert Assignment.objects.get(review=review).state == "completed"


def test_needs_investigation_keeps_the_order_held_and_the_review_open_until_decided(risk):
    agent = reviewer("shen")
    order = held_order()
    review = taken(agent, order)
    client = api_for(agent.user)

    response = client.post(
        decide_url(review), {"decision": "investigate", "note": "打电话核实"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "investigating"
    order.refresh_from_db()
    review.refresh_from_db()
    assert order.stage == "quarantined"
    assert review.is_open and review.decided_at is None
    assert list(RuleHit.objects.filter(order=order).values_list("outcome", flat=True)) == [""]
    assert Assignment.objects.get(review=review).state == "accepted"  # still the reviewer's

    # when the investigation ends in a decision, both are on the review
    response = client.post(
        decide_url(review), {"decision": "false_positive", "note": "已电话确认"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert [d["decision"] for d in response.json()["decisions"]] == ["investigate", "false_positive"]
    order.refresh_from_db()
    assert order.stage == "pending_review"


# --- The API: who may see and decide ---------------------------------------------------------------
def test_another_reviewers_review_is_404_and_left_alone(risk):
    shen = reviewer("shen")
    order = held_order()
    review = taken(shen, order)
    other = reviewer("zhou")
    before = snapshot(order)
    client = api_for(other.user)

    assert client.get(f"/api/reviews/{review.pk}/").status_code == 404
    response = client.post(decide_url(review), {"decision": "confirmed"}, format="json")
    assert response.status_code == 404
    assert client.get("/api/reviews/").json()["results"] == []
    assert snapshot(order) == before
    # while the reviewer who holds it sees it
    assert api_for(shen.user).get(f"/api/reviews/{review.pk}/").status_code == 200


def test_an_agent_without_the_review_role_gets_403_and_writes_nothing(risk):
    order = held_order()
    review = taken(reviewer("shen"), order)
    courier = AgentFactory(user=UserFactory(username="courier", roles=["agent"]), skills={"risk_review": 3})
    before = snapshot(order)
    client = api_for(courier.user)

    for response in (
        client.get("/api/reviews/"),
        client.get(f"/api/reviews/{review.pk}/"),
        client.post(decide_url(review), {"decision": "confirmed"}, format="json"),
    ):
        assert response.status_code == 403
        assert "risk reviewers" in response.json()["detail"]
    assert snapshot(order) == before


def test_a_supervisor_decides_any_review_and_an_unknown_one_is_404(risk, api):
    order = held_order()
    review = Review.objects.get(order=order)  # not even offered yet

    response = api.post(decide_url(review), {"decision": "confirmed", "blacklist": ["card"]}, format="json")

    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert order.stage == "cancelled"
    assert BlacklistEntry.objects.get().value == order.card_fingerprint
    assert PoolEntry.objects.get(review=review).state == "closed"
    assert (
        api.post("/api/reviews/999999/decide/", {"decision": "confirmed"}, format="json").status_code == 404
    )


def test_deciding_a_closed_review_is_409_with_the_reason(risk):
    agent = reviewer("shen")
    order = held_order()
    review = taken(agent, order)
    client = api_for(agent.user)
    assert client.post(decide_url(review), {"decision": "confirmed"}, format="json").status_code == 200
    before = snapshot(order)

    response = client.post(decide_url(review), {"decision": "false_positive"}, format="json")

    assert response.status_code == 409
    assert response.json() == {
        "code": "review_refused",
        "detail": "This review is already closed (Confirmed fraud).",
    }
    assert snapshot(order) == before
    assert before["stage"] == "cancelled" and before["decisions"] == 1


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"decision": "maybe"}, "decision", '"maybe" is not a valid choice.'),
        ({}, "decision", "This field is required."),
        ({"decision": "confirmed", "blacklist": ["email"]}, "blacklist", '"email" is not a valid choice.'),
        (
            {"decision": "confirmed", "blacklist": "ip"},
            "blacklist",
            'Expected a list of items but got type "str".',
        ),
        (
            {"decision": "false_positive", "blacklist": ["ip"]},
            "blacklist",
            "Only confirmed fraud can be blacklisted.",
        ),
        (
            {"decision": "investigate", "blacklist": ["phone"]},
            "blacklist",
            "Only confirmed fraud can be blacklisted.",
        ),
        (
            {"decision": "confirmed", "blacklist": ["ip"], "blacklist_days": 0},
            "blacklist_days",
            "Ensure this value is greater than or equal to 1.",
        ),
        (
            {"decision": "confirmed", "blacklist": ["ip"], "blacklist_days": 3651},
            "blacklist_days",
            "Ensure this value is less than or equal to 3650.",
        ),
        (
            {"decision": "confirmed", "blacklist_days": 7},
            "blacklist_days",
            "An expiry only applies when something is blacklisted.",
        ),
        (
            {"decision": "confirmed", "note": "x" * 2001},
            "note",
            "Ensure this field has no more than 2000 characters.",
        ),
        (
            {"decision": "confirmed", "blacklist": ["ip", "device"]},
            "blacklist",
            "This order has no Device fingerprint to blacklist.",
        ),
    ],
)
def test_bad_input_is_400_with_the_reason_and_writes_nothing(risk, body, field, says):
    agent = reviewer("shen")
    order = held_order(device_id="")
    review = taken(agent, order)
    before = snapshot(order)

    response = api_for(agent.user).post(decide_url(review), body, format="json")

    assert response.status_code == 400
    assert says in " ".join(flatten(response.json()[field]))
    assert snapshot(order) == before
    assert before["stage"] == "quarantined" and before["decisions"] == 0


def test_malformed_json_is_400(risk):
    agent = reviewer("shen")
    order = held_order()
    review = taken(agent, order)

    response = api_for(agent.user).post(decide_url(review), "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"
    assert ReviewDecision.objects.count() == 0


# --- The API: reading ------------------------------------------------------------------------------
def test_the_list_puts_open_reviews_first_filters_by_state_and_pages(risk, api):
    first, second, third = held_order("R-1"), held_order("R-2"), held_order("R-3")
    r1, r2, r3 = (Review.objects.get(order=o) for o in (first, second, third))
    assert api.post(decide_url(r2), {"decision": "confirmed"}, format="json").status_code == 200

    body = api.get("/api/reviews/").json()

    assert body["count"] == 3 and {"next", "previous", "results"} <= set(body)
    assert [r["id"] for r in body["results"]] == [r1.pk, r3.pk, r2.pk]
    row = body["results"][0]
    assert (row["order_tag"], row["channel"], row["state"], row["score"]) == (first.tag, "jd", "open", 60.0)
    assert [r["id"] for r in api.get("/api/reviews/?state=confirmed").json()["results"]] == [r2.pk]
    assert [r["id"] for r in api.get("/api/reviews/?state=open&state=confirmed").json()["results"]] == [
        r1.pk,
        r3.pk,
        r2.pk,
    ]
    bad = api.get("/api/reviews/?state=maybe")
    assert bad.status_code == 400
    assert "maybe" in str(bad.json()["state"])


def test_a_reviewer_lists_only_the_reviews_offered_to_taken_by_or_decided_by_them(risk):
    def listed(agent) -> set[int]:
        return {r["id"] for r in api_for(agent.user).get("/api/reviews/").json()["results"]}

    # given a review offered to one reviewer
    shen = reviewer("shen")
    order = held_order()
    dispatch_tick()
    offer = Assignment.objects.get(review__order=order, state="offered")
    assert listed(shen) == {offer.review_id}
    # when they turn it down, it is no longer theirs to see
    assignment_reject(assignment_id=offer.pk, agent=shen, reason="忙")
    assert listed(shen) == set()
    # when another reviewer takes and decides it, it stays in their list
    zhou = reviewer("zhou")
    review = taken(zhou, order)
    assert listed(zhou) == {review.pk}
    assert (
        api_for(zhou.user).post(decide_url(review), {"decision": "confirmed"}, format="json").status_code
        == 200
    )
    assert listed(zhou) == {review.pk}
    assert listed(shen) == set()


def test_the_review_detail_has_the_order_hits_and_decisions(risk, api):
    order = held_order(note="", coupon_code="NEW50")
    review = Review.objects.get(order=order)

    body = api.get(f"/api/reviews/{review.pk}/").json()

    assert body["order"]["tag"] == order.tag
    assert body["order"]["client_ip"] == order.client_ip
    assert body["order"]["coupon_code"] == "NEW50"
    assert body["order"]["phone_home_city"] == order.customer_phone_city
    assert body["score"] == 60.0
    assert [h["rule_name"] for h in body["hits"]] == ["中转仓/代收点地址"]
    assert body["decisions"] == []


def test_the_schema_documents_the_review_api(risk, api):
    schema = api.get("/api/schema/?format=json").json()
    decide = schema["paths"]["/api/reviews/{review_id}/decide/"]["post"]
    assert {"200", "400", "403", "404", "409"} <= set(decide["responses"])
    body = schema["components"]["schemas"]["ReviewDecideInRequest"]["properties"]
    assert set(body) == {"decision", "note", "blacklist", "blacklist_days"}
    assert "/api/reviews/" in schema["paths"] and "/api/reviews/{review_id}/" in schema["paths"]


def test_an_agents_queue_shows_review_tasks_with_their_order(risk):
    agent = reviewer("shen")
    order = held_order()
    dispatch_tick()

    offers = api_for(agent.user).get("/api/assignments/?mine=1&state=offered").json()["results"]

    review = Review.objects.get(order=order)
    assert [(o["review"], o["review_order_tag"], o["order"]) for o in offers] == [
        (review.pk, order.tag, None)
    ]
    assert offers[0]["order_summary"]["address"] == HELD_ADDRESS


# --- The pages ------------------------------------------------------------------------------------
def test_the_review_page_shows_the_order_its_hits_history_and_related_orders(
    risk, django_assert_max_num_queries
):
    agent = reviewer("shen")
    # the customer's earlier order, and three others from the same IP (one too old to count)
    earlier = order_ingest(
        payload=order_payload(external_id="R-0", customer={"account_id": "acct-liu"}), actor=system_actor("t")
    ).order
    results = order_ingest_batch(
        payloads=[order_payload(external_id=f"IP-{n}", client_ip="203.0.113.9") for n in range(3)],
        actor=system_actor("t"),
    )
    same_ip = [r.order for r in results]
    Order.objects.filter(pk=same_ip[0].pk).update(received_at=timezone.now() - timedelta(days=91))
    order = held_order(
        "R-1",
        customer={"account_id": "acct-liu"},
        client_ip="203.0.113.9",
        coupon_code="NEW50",
        note="放门口",
    )
    review = taken(agent, order)
    client = page_for(agent.user)

    with django_assert_max_num_queries(15):  # a fixed number, whatever the history holds
        response = client.get(f"/risk/reviews/{review.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    hits = RuleHit.objects.filter(order=order).select_related("rule")
    assert {h.rule.name for h in hits} == {"中转仓/代收点地址", "同一IP 5分钟3单"}  # the 3rd from that IP
    for hit in hits:
        assert hit.explanation in html and hit.rule.name in html
    assert "+60" in html
    assert f'href="/orders/{order.pk}/"' in html
    for text in (HELD_ADDRESS, "NEW50", "放门口", "203.0.113.9", order.customer_phone_city, order.device_id):
        assert text in html
    assert order.card_fingerprint not in html.replace(f'title="{order.card_fingerprint}"', "")
    assert order.card_fingerprint[:8] + "…" in html
    history = response.context["history"]
    assert [o.pk for o in history] == [earlier.pk]
    related = {group.kind: [o.pk for o in group.orders] for group in response.context["related"]}
    assert set(related["ip"]) == {same_ip[1].pk, same_ip[2].pk}  # not the 91-day-old one, not itself
    assert related["device"] == [] and related["card"] == []
    # the form offers the three decisions and the four values to blacklist
    for value in ("confirmed", "false_positive", "investigate"):
        assert f'name="decision" value="{value}"' in html
    for kind in ("ip", "phone", "device", "card"):
        assert f'name="blacklist" value="{kind}"' in html


def test_related_orders_stop_at_20_each(risk):
    # (the device rule would hold most of them; this is about listing, not screening)
    Rule.objects.filter(kind="device_velocity").update(is_active=False)
    clear_caches()  # a bulk update sends no signal: drop the cached rules
    agent = reviewer("shen")
    results = order_ingest_batch(
        payloads=[order_payload(external_id=f"D-{n}", device_id="dev-shared") for n in range(22)],
        actor=system_actor("t"),
    )
    assert all(r.status == "created" for r in results)
    order = held_order("R-1", device_id="dev-shared")
    review = taken(agent, order)

    response = page_for(agent.user).get(f"/risk/reviews/{review.pk}/")

    group = next(g for g in response.context["related"] if g.kind == "device")
    assert len(group.orders) == 20 and group.more
    assert order.pk not in {o.pk for o in group.orders}
    assert "More than 20" in response.content.decode()


def test_a_reviewer_confirms_fraud_on_the_page_and_blacklists_the_ip(risk):
    agent = reviewer("shen")
    order = held_order()
    review = taken(agent, order)
    client = page_for(agent.user)
    client.get(f"/risk/reviews/{review.pk}/")

    response = client.post(
        f"/risk/reviews/{review.pk}/",
        {"decision": "confirmed", "note": "刷单", "blacklist": ["ip"], "blacklist_days": ""},
        follow=True,
    )

    assert response.redirect_chain == [(f"/risk/reviews/{review.pk}/", 302)]
    html = response.content.decode()
    assert f"{order.tag} is confirmed fraud and was cancelled. Blacklisted: IP address." in html
    assert 'id="r-decide"' not in html  # the decision form is gone from a closed review
    order.refresh_from_db()
    assert order.stage == "cancelled"
    entry = BlacklistEntry.objects.get()
    assert (entry.kind, entry.value, entry.expires_at) == ("ip", order.client_ip, None)


def test_the_page_releases_a_false_positive_and_marks_one_for_investigation(risk):
    agent = reviewer("shen")
    released, kept = held_order("R-1"), held_order("R-2")
    client = page_for(agent.user)
    r1, r2 = taken(agent, released), taken(agent, kept)

    first = client.post(f"/risk/reviews/{r1.pk}/", {"decision": "false_positive", "note": ""}, follow=True)
    second = client.post(
        f"/risk/reviews/{r2.pk}/", {"decision": "investigate", "note": "待核实"}, follow=True
    )

    assert "released to pending review" in first.content.decode()
    assert "needing investigation" in second.content.decode()
    assert 'id="r-decide"' in second.content.decode()  # still open: it can be decided later
    released.refresh_from_db()
    kept.refresh_from_db()
    assert (released.stage, kept.stage) == ("pending_review", "quarantined")
    assert Review.objects.get(pk=r2.pk).state == "investigating"


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"note": "x"}, "Choose a decision."),
        ({"decision": "false_positive", "blacklist": ["ip"]}, "Only confirmed fraud can be blacklisted."),
        ({"decision": "confirmed", "blacklist": ["email"]}, "Select a valid choice. email is not one of"),
        ({"decision": "confirmed", "blacklist": ["device"]}, "Select a valid choice. device is not one of"),
        ({"decision": "confirmed", "blacklist": ["ip"], "blacklist_days": "0"}, "greater than or equal to 1"),
        (
            {"decision": "confirmed", "blacklist_days": "5"},
            "An expiry only applies when something is blacklisted.",
        ),
        ({"decision": "confirmed", "note": "x" * 2001}, "at most 2000 characters"),
    ],
)
def test_a_bad_form_is_shown_again_with_the_reason_and_writes_nothing(risk, form, says):
    agent = reviewer("shen")
    order = held_order(device_id="")
    review = taken(agent, order)
    before = snapshot(order)

    response = page_for(agent.user).post(f"/risk/reviews/{review.pk}/", form)

    assert response.status_code == 400
    assert says in response.content.decode()
    assert snapshot(order) == before


def test_deciding_a_closed_review_on_the_page_says_why_and_writes_nothing(risk):
    agent = reviewer("shen")
    order = held_order()
    review = taken(agent, order)
    client = page_for(agent.user)
    client.post(f"/risk/reviews/{review.pk}/", {"decision": "false_positive"})
    before = snapshot(order)

    # e.g. a second tab still showing the form
    response = client.post(f"/risk/reviews/{review.pk}/", {"decision": "confirmed"}, follow=True)

    assert "Nothing was decided: This review is already closed (False positive)." in response.content.decode()
    assert snapshot(order) == before


def test_review_pages_refuse_other_roles_with_403_and_other_reviewers_with_404(risk):
    order = held_order()
    review = taken(reviewer("shen"), order)
    courier = AgentFactory(user=UserFactory(username="courier", roles=["agent"]))
    other = reviewer("zhou")
    before = snapshot(order)

    for url in ("/risk/reviews/", f"/risk/reviews/{review.pk}/", "/risk/report/"):
        response = page_for(courier.user).get(url)
        assert response.status_code == 403
        assert "Only risk reviewers, supervisors and admins may open this page." in response.content.decode()
    assert (
        page_for(courier.user).post(f"/risk/reviews/{review.pk}/", {"decision": "confirmed"}).status_code
        == 403
    )
    assert page_for(other.user).get(f"/risk/reviews/{review.pk}/").status_code == 404
    assert (
        page_for(other.user).post(f"/risk/reviews/{review.pk}/", {"decision": "confirmed"}).status_code == 404
    )
    assert snapshot(order) == before
    anonymous = Client().get("/risk/reviews/")
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_the_list_page_shows_open_reviews_first_and_filters_by_state(
    risk, supervisor, django_assert_max_num_queries
):
    agent = reviewer("shen")
    orders = [held_order(f"R-{n}") for n in range(4)]
    reviews = [Review.objects.get(order=o) for o in orders]
    taken_review = taken(agent, orders[3])
    page_for(supervisor).post(f"/risk/reviews/{reviews[0].pk}/", {"decision": "confirmed"})
    client = page_for(supervisor)

    with django_assert_max_num_queries(12):
        response = client.get("/risk/reviews/")

    assert response.status_code == 200
    shown = [r.pk for r in response.context["page"]]
    assert shown == [reviews[1].pk, reviews[2].pk, reviews[3].pk, reviews[0].pk]
    html = response.content.decode()
    assert orders[1].tag in html
    assert taken_review.agent.display_name in html  # the reviewer column
    assert "京东" in html
    confirmed = client.get("/risk/reviews/?state=confirmed")
    assert [r.pk for r in confirmed.context["page"]] == [reviews[0].pk]
    bad = client.get("/risk/reviews/?state=maybe")
    assert bad.status_code == 400 and "Unknown review state “maybe”" in bad.content.decode()


def test_people_with_review_roles_get_the_nav_links(risk, supervisor):
    agent = reviewer("shen")
    courier = UserFactory(username="cs", roles=["customer_service"])

    for user, shown in ((agent.user, True), (supervisor, True), (courier, False)):
        html = page_for(user).get("/").content.decode()
        assert ('href="/risk/reviews/"' in html) is shown
        assert ('href="/risk/report/"' in html) is shown


# --- The monthly report ---------------------------------------------------------------------------
def test_the_report_counts_hits_and_outcomes_per_rule_with_the_weight_trail(risk, supervisor):
    now = timezone.localtime()
    month = f"{now:%Y-%m}"
    agent = reviewer("shen")
    orders = [held_order(f"R-{n}") for n in range(3)]
    client = api_for(agent.user)
    for order, decision in zip(orders, ["confirmed", "false_positive", "investigate"], strict=True):
        review = taken(agent, order)
        assert client.post(decide_url(review), {"decision": decision}, format="json").status_code == 200
    rule = Rule.objects.get(name="中转仓/代收点地址")
    RuleWeightChange.objects.create(
        rule=rule, at=now - timedelta(minutes=1), source="learning", old_weight=80, new_weight=60, reason="t"
    )

    response = page_for(supervisor).get(f"/risk/report/?month={month}")

    assert response.status_code == 200
    row = next(r for r in response.context["rows"] if r.rule.pk == rule.pk)
    assert (row.hits, row.confirmed, row.false_positives, row.precision) == (3, 1, 1, 0.5)
    assert row.weight_end == rule.weight == 60
    assert len(row.trail) == 6 and row.trail[-1] == (now.date().replace(day=1), 60)
    assert row.trail[-2][1] == 80  # before this month's change
    html = response.content.decode()
    assert "中转仓/代收点地址" in html and "50%" in html
    assert f'value="{month}"' in html  # the month picker


def test_the_report_downloads_as_csv_with_formulas_neutralised(risk, supervisor):
    Rule.objects.create(name="=cmd|' /C calc'!A0", kind="round_amount", params={"multiple": 1000}, weight=10)

    response = page_for(supervisor).get("/risk/report/?month=2026-11&format=csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="risk-rules-2026-11.csv"' in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][:8] == [
        "Rule", "Type", "On", "Hits", "Confirmed", "False positives", "Precision (%)", "Weight at month end",
    ]  # fmt: skip
    assert rows[0][8:] == [f"Weight 2026-{m:02d}" for m in range(6, 12)]
    names = [r[0] for r in rows[1:]]
    assert "'=cmd|' /C calc'!A0" in names
    assert "=cmd|' /C calc'!A0" not in names
    assert len(rows) == 1 + Rule.objects.filter(is_active=True).count()


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("month=2026-13", "months run from 01 to 12"),
        ("month=November", "is not a month: write it as YYYY-MM"),
        ("month=2026-1", "is not a month: write it as YYYY-MM"),
        ("month=1999-12", "The report covers the years 2000 to 2100."),
        ("month=2026-11&format=xlsx", "Unknown format “xlsx”"),
    ],
)
def test_a_bad_report_parameter_is_a_400_page_with_the_reason(risk, supervisor, query, says):
    response = page_for(supervisor).get(f"/risk/report/?{query}")
    assert response.status_code == 400
    assert says in response.content.decode()


def test_risk_reviewers_may_read_the_report(risk):
    response = page_for(reviewer("shen").user).get("/risk/report/")
    assert response.status_code == 200
    assert response.context["month"] == timezone.localdate().replace(day=1)
