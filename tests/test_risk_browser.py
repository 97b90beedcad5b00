"""A risk reviewer's day in a real browser on a phone-sized screen: a held order's review
task arrives in their queue, they open the review, read why the order was held, confirm the
fraud and blacklist its IP with one tick. daphne serves the pages so the queue is live, as in
tests/test_queue_browser.py."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agents.models import Skill
from dispatch.models import Assignment
from orders.actors import system_actor
from orders.models import Order
from orders.services import order_ingest
from riskcontrol.defaults import install_defaults
from riskcontrol.models import BlacklistEntry, Review, RiskPolicy, Rule, RuleHit
from tests.factories import PASSWORD, AgentFactory, ChannelFactory, UserFactory, order_payload
from tests.test_pages_browser import browser, log_in, off_the_loop  # noqa: F401 - browser is a fixture
from tests.test_queue_browser import PHONE, daphne, make_roles, phone, redis_layer  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_reviewer_takes_a_review_from_the_queue_and_confirms_fraud_with_the_ip_blacklisted(phone, daphne):  # noqa: F811
    # given a risk reviewer, and an order held at the door for its transit-warehouse address
    def given():
        make_roles()
        install_defaults(Rule, RiskPolicy, Skill)  # the flush dropped what the data migration made
        ChannelFactory(code="jd", name="京东", tag_prefix="JD")
        return AgentFactory(
            user=UserFactory(username="shenyu", roles=["risk_reviewer"]),
            display_name="沈雨",
            skills={"risk_review": 3},
        )

    agent = off_the_loop(given)

    def ingest() -> Order:
        result = order_ingest(
            payload=order_payload(external_id="RISK-B-1", address="浙江省杭州市余杭区临时仓A区12号"),
            actor=system_actor("test"),
        )
        assert result.status == "created", result.errors
        return Order.objects.get(pk=result.order.pk)

    order = off_the_loop(ingest)
    assert order.stage == "quarantined"
    # (the dispatch round after the ingest offered the review task to the reviewer)
    offer = off_the_loop(lambda: Assignment.objects.get(review__order=order, state="offered"))
    assert offer.agent_id == agent.pk
    review_id = offer.review_id
    explanation = off_the_loop(lambda: RuleHit.objects.get(order=order).explanation)
    name = f"Risk review {order.tag}"

    # when the reviewer opens their queue on a phone, the task is offered with the order's details
    page = phone
    log_in(page, "shenyu", PASSWORD)
    page.goto("/queue/")
    card = page.locator("#q-offers .q-list > li", has_text=name)
    expect(card).to_have_count(1)
    expect(card).to_contain_text("浙江省杭州市余杭区临时仓A区12号")
    expect(page.locator("#q-reviews")).to_be_hidden()

    # when they accept it, it is one of their reviews, linked to the review page
    card.get_by_role("button", name="Accept").click()
    expect(page.locator("#q-message")).to_contain_text(f"You accepted {name}.")
    mine = page.locator("#q-reviews .q-list > li", has_text=name)
    expect(mine).to_have_count(1)
    expect(page.locator("#q-orders .q-list > li")).to_have_count(0)
    link = mine.locator("a.q-tag")
    expect(link).to_have_attribute("href", f"/risk/reviews/{review_id}/")
    link.click()

    # then the review page shows why the order was held
    expect(page).to_have_url(re.compile(rf"/risk/reviews/{review_id}/$"))
    expect(page.locator("h1")).to_contain_text(order.tag)
    expect(page.locator("#r-hits")).to_contain_text(explanation)
    expect(page.locator("#r-hits")).to_contain_text("中转仓/代收点地址")
    expect(page.locator("#r-order")).to_contain_text(order.client_ip)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # when they choose confirmed fraud, tick the IP box and record it
    page.get_by_label("Confirmed fraud").check()
    page.locator("input[name=blacklist][value=ip]").check()
    page.get_by_label("Note").fill("临时仓地址，同IP多单")
    page.get_by_role("button", name="Record decision").click()

    # then the page says so, the form is gone, and the decision is in the history
    expect(page.locator(".messages")).to_contain_text(
        f"{order.tag} is confirmed fraud and was cancelled. Blacklisted: IP address."
    )
    expect(page.locator("#r-decide")).to_have_count(0)
    expect(page.locator("#r-decisions")).to_contain_text("临时仓地址，同IP多单")
    expect(page.locator("h1 .r-state")).to_have_text("Confirmed fraud")

    # and the order is cancelled and its IP blacklisted
    def outcome():
        o = Order.objects.get(pk=order.pk)
        entries = list(BlacklistEntry.objects.values_list("kind", "value"))
        return o.stage, o.client_ip, entries, Review.objects.get(pk=review_id).state

    stage, ip, entries, state = off_the_loop(outcome)
    assert (stage, entries, state) == ("cancelled", [("ip", ip)], "confirmed")

    # and back on the queue, the review is gone from their open work
    page.goto("/queue/")
    expect(page.locator("#q-offers .q-empty")).to_be_visible()
    expect(page.locator("#q-reviews")).to_be_hidden()
