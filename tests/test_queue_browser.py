"""The agent's queue page in a real browser on a phone-sized screen, served by daphne so the
websocket is real: offers count down, are accepted and rejected, new offers arrive live, and
the page catches up after the server was away.

pytest-django's live_server is a WSGI server without websockets, so daphne runs as a
subprocess on this test's database (committed: transactional tests) with the Redis channel
layer, and this process switches to the same layer so its service pushes reach daphne."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import pytest
from channels.layers import channel_layers
from django.contrib.auth.models import Group
from django.db import connection
from playwright.sync_api import Page, expect

from dispatch.models import Assignment, Inquiry
from dispatch.services import inquiry_create
from orders.actors import system_actor
from orders.models import Channel, Order
from orders.services import order_ingest
from orders.states import Role
from tests.factories import PASSWORD, AgentFactory, ChannelFactory, order_payload
from tests.test_e2e_runtime import BIN, free_port, running
from tests.test_pages_browser import browser, log_in, off_the_loop  # noqa: F401 - browser is a fixture

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 375, "height": 740}


@pytest.fixture
def redis_layer(settings) -> Iterator[None]:
    """This process pushes through Redis, where daphne's consumers listen."""
    if not os.environ.get("REDIS_URL") or connection.vendor != "postgresql":
        pytest.fail(
            "the queue page test needs DATABASE_URL (PostgreSQL) and REDIS_URL: run it through `make test`"
        )
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": None}], "expiry": 60},
        }
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


class Daphne:
    """daphne on a fixed port that the test can stop and start again."""

    def __init__(self, stack: ExitStack, logdir: Path) -> None:
        self.stack, self.logdir = stack, logdir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        db = connection.settings_dict
        url = f"postgres://{quote(db['USER'] or 'postgres', safe='')}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "SECURE_COOKIES": "0",
            "DJANGO_SECRET_KEY": "queue-e2e",
        }
        self.starts = 0
        self._stop: ExitStack | None = None

    def start(self) -> None:
        self.starts += 1
        inner = ExitStack()
        inner.enter_context(
            running(
                f"daphne-{self.starts}",
                [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "config.asgi:application"],
                env=self.env,
                logdir=self.logdir,
                port=self.port,
            )
        )
        self._stop = inner
        self.stack.callback(inner.close)

    def stop(self) -> None:
        assert self._stop is not None
        self._stop.close()
        self._stop = None


@pytest.fixture
def daphne(transactional_db, redis_layer, tmp_path) -> Iterator[Daphne]:
    with ExitStack() as stack:
        server = Daphne(stack, tmp_path)
        server.start()
        yield server


@pytest.fixture
def phone(browser, daphne) -> Iterator[Page]:  # noqa: F811 - the imported fixture
    context = browser.new_context(viewport=PHONE, locale="en-US", base_url=daphne.base, has_touch=True)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


def make_roles() -> None:
    # A transactional test's flush drops the groups the data migration made.
    for role in Role:
        if role != Role.SYSTEM:
            Group.objects.get_or_create(name=role)


def ingest(external_id: str, **customer: str) -> Order:
    """An order from JD; ingesting it (CELERY_TASK_ALWAYS_EAGER) runs a dispatch round after commit."""

    def run() -> Order:
        result = order_ingest(
            payload=order_payload(
                external_id=external_id, customer={"account_id": f"acct-{external_id}", **customer}
            ),
            actor=system_actor("test"),
        )
        assert result.status == "created", result.errors
        return result.order

    return off_the_loop(run)


def offer_for(order: Order) -> Assignment:
    return off_the_loop(lambda: Assignment.objects.select_related("agent").get(order=order, state="offered"))


def offers(page: Page):
    return page.locator("#q-offers .q-list > li")


def card(section: str, page: Page, tag: str):
    return page.locator(f"#{section} .q-list > li", has_text=tag)


def test_an_agent_on_a_phone_answers_offers_and_sees_new_ones_arrive_live(phone, daphne):
    # given an online agent with two offers waiting
    def given():
        make_roles()
        ChannelFactory(code="jd", tag_prefix="JD")
        return AgentFactory(user__username="xiaowang", display_name="小王", capacity=5)

    agent = off_the_loop(given)
    first = ingest("Q-B-1", name="王小明")
    second = ingest("Q-B-2", name="李晓燕")
    assert offer_for(first).agent_id == agent.pk and offer_for(second).agent_id == agent.pk

    # when the agent logs in on a 375 px phone and opens the queue
    page = phone
    log_in(page, "xiaowang", PASSWORD)
    page.goto("/queue/")

    # then both offers are there, with a countdown that runs
    expect(page.locator("#queue")).to_have_class(re.compile(r"\bq-live\b"))
    expect(offers(page)).to_have_count(2)
    clock = card("q-offers", page, first.tag).locator(".q-countdown")
    expect(clock).to_have_text(re.compile(r"^(09:5\d|10:00)$"))
    before = clock.inner_text()
    expect(clock).not_to_have_text(before, timeout=3000)
    expect(card("q-offers", page, first.tag)).to_contain_text("王小明")
    expect(page.locator("#q-load")).to_have_text("2 / 5")
    # and nothing is wider than the phone
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # when they accept the first
    card("q-offers", page, first.tag).get_by_role("button", name="Accept").click()

    # then it leaves the offers and shows under my orders, linked to the order page
    expect(page.locator("#q-message")).to_contain_text(f"You accepted {first.tag}.")
    expect(card("q-offers", page, first.tag)).to_have_count(0)
    mine = card("q-orders", page, first.tag)
    expect(mine).to_have_count(1)
    expect(mine.locator("a.q-tag")).to_have_attribute("href", f"/orders/{first.pk}/")
    expect(mine).to_contain_text("Pending review")
    expect(mine).to_contain_text("广东省深圳市南山区科技园南区8栋1203")

    # when they reject the second, the reason is asked inline and required
    offer = card("q-offers", page, second.tag)
    offer.get_by_role("button", name="Reject").click()
    reason = offer.locator("input[name=reason]")
    expect(reason).to_be_visible()
    expect(reason).to_be_focused()
    offer.get_by_role("button", name="Reject offer").click()
    expect(offer.locator(".q-field-error")).to_be_visible()
    reason.fill("太远了，今天去不了")
    offer.get_by_role("button", name="Reject offer").click()

    # then it disappears, and the reason is on the assignment
    expect(card("q-offers", page, second.tag)).to_have_count(0)
    expect(page.locator("#q-message")).to_contain_text(f"You rejected {second.tag}.")
    rejected = off_the_loop(lambda: Assignment.objects.get(order=second))
    assert (rejected.state, rejected.reason) == ("rejected", "太远了，今天去不了")

    # when a new order is offered to them while the page is open
    page.evaluate("window.notReloaded = true")
    third = ingest("Q-B-3", name="赵建国")
    assert offer_for(third).agent_id == agent.pk

    # then it appears from the push, well before the 30 s safety re-read, without a reload
    expect(card("q-offers", page, third.tag)).to_have_count(1, timeout=5000)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#q-load")).to_have_text("2 / 5")


def test_the_page_reconnects_and_catches_up_on_what_it_missed(phone, daphne):
    # given an agent with the queue open and live
    def given():
        make_roles()
        ChannelFactory(code="jd", tag_prefix="JD")
        return AgentFactory(user__username="xiaoli", display_name="小李")

    off_the_loop(given)
    page = phone
    log_in(page, "xiaoli", PASSWORD)
    page.goto("/queue/")
    expect(page.locator("#queue")).to_have_class(re.compile(r"\bq-live\b"))
    expect(page.locator("#q-offers .q-empty")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    # when the server goes away
    daphne.stop()

    # then the page says it is reconnecting
    expect(page.locator("#q-reconnecting")).to_be_visible()

    # when an offer is made while no socket listens (its push is lost) and the server returns
    missed = ingest("Q-B-4", name="陈思远")
    time.sleep(1)
    daphne.start()

    # then the page reconnects, re-reads, and shows the offer it was never told about
    expect(page.locator("#q-reconnecting")).to_be_hidden(timeout=20_000)
    expect(card("q-offers", page, missed.tag)).to_have_count(1)
    expect(page.locator("#queue")).to_have_class(re.compile(r"\bq-live\b"))
    assert page.evaluate("window.notReloaded") is True


def test_api_errors_are_shown_to_the_agent(phone, daphne):
    # given an agent with an offer on the page
    def given():
        make_roles()
        ChannelFactory(code="jd", tag_prefix="JD")
        return AgentFactory(user__username="xiaozhao", display_name="小赵")

    off_the_loop(given)
    order = ingest("Q-B-5")
    page = phone
    log_in(page, "xiaozhao", PASSWORD)
    page.goto("/queue/")
    expect(card("q-offers", page, order.tag)).to_have_count(1)
    expect(page.locator("#queue")).to_have_class(re.compile(r"\bq-live\b"))
    page.wait_for_load_state("networkidle")  # the reads on load and on connect are done

    # when the offer is taken away behind the page's back, without a push reaching it
    def released():
        Assignment.objects.filter(order=order).update(state="released")

    off_the_loop(released)
    card("q-offers", page, order.tag).get_by_role("button", name="Accept").click()

    # then the server's refusal is shown, and the stale offer is gone after the re-read
    expect(page.locator("#q-message")).to_contain_text(
        "This offer is released; only an open offer can be accepted."
    )
    expect(page.locator("#q-message")).to_have_class(re.compile(r"\bq-error\b"))
    expect(card("q-offers", page, order.tag)).to_have_count(0)
    assert off_the_loop(lambda: Assignment.objects.get(order=order).state) == "released"


def test_an_agent_takes_a_customer_inquiry_and_closes_it(phone, daphne):
    # given an agent with the queue open
    def given():
        make_roles()
        ChannelFactory(code="jd", tag_prefix="JD")
        return AgentFactory(user__username="xiaochen", display_name="小陈")

    agent = off_the_loop(given)
    page = phone
    log_in(page, "xiaochen", PASSWORD)
    page.goto("/queue/")
    expect(page.locator("#queue")).to_have_class(re.compile(r"\bq-live\b"))

    # when a customer's chat message is routed to them
    def ask() -> Inquiry:
        return inquiry_create(
            channel=Channel.objects.get(code="jd"),
            account_id="jd_u_9",
            customer_name="周雨桐",
            text="空调不制冷，能上门看看吗？",
            vip=False,
        )

    inquiry = off_the_loop(ask)
    name = f"Inquiry {inquiry.pk}"

    # then it is offered live, with the message, and once accepted it is one of my inquiries
    offer = card("q-offers", page, name)
    expect(offer).to_contain_text("空调不制冷，能上门看看吗？")
    offer.get_by_role("button", name="Accept").click()
    held = card("q-inquiries", page, name)
    expect(held).to_contain_text("周雨桐")
    expect(held).to_contain_text("jd")
    expect(card("q-orders", page, name)).to_have_count(0)

    # when they close it, it leaves the page and the inquiry is closed
    held.get_by_role("button", name="Close inquiry").click()
    expect(page.locator("#q-message")).to_contain_text(f"Inquiry {inquiry.pk} closed.")
    expect(card("q-inquiries", page, name)).to_have_count(0)
    expect(page.locator("#q-inquiries .q-empty")).to_be_visible()
    closed = off_the_loop(lambda: Inquiry.objects.get(pk=inquiry.pk))
    assert (closed.state, closed.agent_id) == ("closed", agent.pk)
