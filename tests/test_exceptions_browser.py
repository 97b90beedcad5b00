"""An exception routed to an agent shows up live on their phone's queue page under "My
exceptions", and resolving it there returns the order and texts the customer. daphne serves
the page and the websocket on this test's (committed) database, as in test_queue_browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agents.models import Team
from dashboards.defaults import install_defaults as install_templates
from dashboards.models import Notification, NotificationTemplate
from orders.actors import system_actor
from orders.defaults import install_defaults as install_exception_types
from orders.exceptions import exception_raise
from orders.models import ExceptionCase, ExceptionType, Order, SlaPolicy
from tests.factories import PASSWORD, AgentFactory, ChannelFactory, UserFactory
from tests.test_pages_browser import browser, log_in, off_the_loop  # noqa: F401 - browser is a fixture
from tests.test_queue_browser import (  # noqa: F401 - daphne, phone and redis_layer are fixtures
    card,
    daphne,
    ingest,
    make_roles,
    phone,
    redis_layer,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_agent_resolves_an_exception_routed_to_them_from_the_queue_page(phone, daphne):  # noqa: F811
    # given an order waiting in the pool, and then a customer-service agent of the team that
    # handles damaged goods (the order came first, so it is not offered to them)
    def given():
        make_roles()
        install_templates(NotificationTemplate)
        install_exception_types(SlaPolicy, ExceptionType)
        ChannelFactory(code="jd", tag_prefix="JD")

    off_the_loop(given)
    order = ingest("Q-EX-1", name="王小明")

    def agent_of_team():
        team = Team.objects.create(code="cs", name="客服组")
        ExceptionType.objects.filter(code="damaged").update(team=team)
        agent = AgentFactory(user=UserFactory(username="xiaozhou", roles=["agent", "customer_service"]))
        agent.teams.add(team)
        return agent

    agent = off_the_loop(agent_of_team)

    # and the agent has the queue open, with no exceptions on it
    page = phone
    log_in(page, "xiaozhou", PASSWORD)
    page.goto("/queue/")
    expect(page.locator("#queue")).to_have_class(re.compile(r"\bq-live\b"))
    expect(page.locator("#q-exceptions")).to_be_hidden()
    page.evaluate(
        "window.notReloaded = true; window.notified = 0;"
        "document.addEventListener('paidan:notified', function () { window.notified += 1; });"
    )

    # when the warehouse reports the goods damaged
    case = off_the_loop(
        lambda: exception_raise(
            order_id=order.pk, type_code="damaged", actor=system_actor("test"), note="外箱压坏"
        )
    )
    assert case.owner_id == agent.pk

    # then it appears live under my exceptions, and the inbox bell is told of the task
    mine = card("q-exceptions", page, order.tag)
    expect(mine).to_have_count(1, timeout=5000)
    expect(mine).to_contain_text("商品破损")
    expect(mine).to_contain_text("外箱压坏")
    expect(mine).to_contain_text("Pending review")  # where it was held, and returns to
    expect(mine.locator("a.q-tag")).to_have_attribute("href", f"/orders/{order.pk}/")
    page.wait_for_function("window.notified > 0", timeout=5000)
    assert page.evaluate("window.notReloaded") is True

    # when they resolve it: the resolution is asked inline and required
    mine.get_by_role("button", name="Resolve").click()
    resolution = mine.locator("input[name=resolution]")
    expect(resolution).to_be_focused()
    mine.get_by_role("button", name="Resolve and return the order").click()
    expect(mine.locator(".q-field-error")).to_be_visible()
    resolution.fill("已换新包装")
    mine.get_by_role("button", name="Resolve and return the order").click()

    # then the page says so, the card and the section go, the order is back in its stage
    expect(page.locator("#q-message")).to_contain_text(f"The exception on {order.tag} is resolved.")
    expect(card("q-exceptions", page, order.tag)).to_have_count(0)
    expect(page.locator("#q-exceptions")).to_be_hidden()

    def outcome():
        closed = ExceptionCase.objects.get(pk=case.pk)
        sms = Notification.objects.get(order_id=order.pk, channel="sms")
        return closed.status, closed.resolution, Order.objects.get(pk=order.pk).stage, sms.body

    status, text, stage, sms = off_the_loop(outcome)
    assert (status, text, stage) == ("resolved", "已换新包装", "pending_review")
    assert sms == f"【派单】王小明您好，您的订单{order.tag}（商品破损）已处理：已换新包装"
