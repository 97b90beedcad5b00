"""The pages in a real browser (Debian Chromium through Playwright) against a live server:
logging in and out, the order list with its filters, one order's timeline, and the language
switch between Simplified Chinese and English."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from django.contrib.auth.models import Group
from django.db import connections
from django.utils import translation
from playwright.sync_api import Browser, Page, expect, sync_playwright

from orders.actors import system_actor
from orders.models import Order, OrderEvent
from orders.services import order_ingest_batch, order_transition
from orders.states import Role
from tests.factories import PASSWORD, ChannelFactory, UserFactory, order_payload

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium fonts-noto-cjk)")
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as p:
        # Playwright's sync API keeps an event loop in this thread, and Django refuses ORM
        # calls from a thread with a running loop; pytest-django's flush between tests is
        # plain synchronous code. Only for this module, so other tests keep the check.
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_for(browser, live_server, settings):
    """A fresh browser context per test; `locale` sets the Accept-Language it sends."""
    # Plain http on the live server: cookies must not be Secure-only.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    contexts = []

    def make(locale: str = "zh-CN") -> Page:
        context = browser.new_context(locale=locale, base_url=live_server.url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def off_the_loop(fn: Callable[[], T]) -> T:
    """Run set-up in a plain thread: this thread holds Playwright's event loop, where the
    after-commit board push (async_to_sync) refuses to run."""

    def run() -> T:
        try:
            return fn()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def shop(transactional_db):
    """A supervisor and six orders from two channels, two of them moved on to picking."""
    return off_the_loop(_make_shop)


def _make_shop() -> dict[str, Order]:
    # A transactional test's flush also drops the role groups the data migration made.
    for role in Role:
        if role != Role.SYSTEM:
            Group.objects.get_or_create(name=role)
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    ChannelFactory(code="taobao", name="淘宝", tag_prefix="TB")
    UserFactory(username="zhangli", roles=["supervisor"])
    customers = [
        ("jd", "王小明", "13510001000", "广东省深圳市南山区科技园南区8栋1203"),
        ("jd", "李晓燕", "13800138111", "浙江省杭州市西湖区文三路478号"),
        ("jd", "赵建国", "13912345678", "北京市朝阳区建国路88号"),
        ("taobao", "陈思远", "18612345678", "上海市浦东新区张江路88弄3号楼1201室"),
        ("taobao", "周雨桐", "15012345678", "江苏省南京市鼓楼区中山北路100号"),
        ("taobao", "黄志强", "17712345678", "学校门口小卖部"),
    ]
    payloads = [
        order_payload(
            channel=channel,
            external_id=f"E2E-{n:03d}",
            customer={"name": name, "phone": phone, "account_id": f"acct-{n}"},
            address=address,
        )
        for n, (channel, name, phone, address) in enumerate(customers)
    ]
    results = order_ingest_batch(payloads=payloads, actor=system_actor("api:e2e"))
    assert [r.status for r in results] == ["created"] * 6
    for result in results[:2]:
        order_transition(order_id=result.id, to="picking", actor=system_actor("api:e2e"), reason="审核通过")
    return {r.external_id: Order.objects.get(pk=r.id) for r in results}


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")


def rows(page: Page):
    return page.locator("table.orders tbody tr[data-order]")


def test_a_wrong_password_shows_the_error_and_logs_nobody_in(page_for, shop):
    page = page_for("zh-CN")

    log_in(page, "zhangli", "not-the-password")

    expect(page.get_by_role("alert")).to_have_text("用户名或密码不正确，请重试。")
    assert page.url.endswith("/login/")
    assert not [c for c in page.context.cookies() if c["name"] == "sessionid"]
    page.goto("/")
    assert "/login/" in page.url  # still anonymous: the list sends us back to log in
    expect(rows(page)).to_have_count(0)


def test_a_supervisor_lists_filters_and_opens_orders_then_logs_out(page_for, shop):
    page = page_for("zh-CN")

    log_in(page, "zhangli", PASSWORD)

    # Every order is listed, newest first, with its readable tag and customer.
    expect(rows(page)).to_have_count(6)
    for order in shop.values():
        expect(page.locator("table.orders")).to_contain_text(order.tag)
    expect(page.locator("table.orders")).to_contain_text("黄志强")

    # Filter by stage: only the two orders moved on to picking remain.
    page.select_option("select[name=stage]", "picking")
    page.click("form.filters button[type=submit]")
    expect(rows(page)).to_have_count(2)
    picking = {o.tag for o in shop.values() if o.stage == "picking"}
    assert {t.strip() for t in rows(page).locator("td:first-child").all_inner_texts()} == picking
    expect(rows(page).first.locator(".stage")).to_have_text("待配货")

    # Text search by customer name, across all stages.
    page.select_option("select[name=stage]", "")
    page.fill("input[name=q]", "陈思远")
    page.click("form.filters button[type=submit]")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_contain_text("上海市")

    # Open it: the timeline shows the ingestion, by whom, into which stage.
    target = shop["E2E-003"]
    page.click(f"text={target.tag}")
    expect(page.locator("h1")).to_contain_text(target.tag)
    first_event = page.locator("ol.timeline li").first
    with translation.override("zh-hans"):
        received_label = str(OrderEvent.Kind.INGESTED.label)
    assert received_label != "Received"  # the catalogue is compiled and has the label
    expect(first_event).to_contain_text(received_label)
    expect(first_event).to_contain_text("api:e2e")
    expect(first_event).to_contain_text("→ 待审核")

    # Log out: back to the login page, and the list is closed again.
    page.click("header form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login/$"))
    page.goto("/")
    assert "/login/" in page.url


def test_pages_are_in_chinese_for_zh_and_switch_to_english(page_for, shop):
    page = page_for("zh-CN")
    page.goto("/login/")
    expect(page.locator("form button[type=submit]")).to_have_text("登录")

    log_in(page, "zhangli", PASSWORD)
    expect(page.locator("h1")).to_contain_text("订单")
    expect(page.locator("select[name=stage] option[value=pending_review]")).to_have_text("待审核")
    expect(page.locator("header form button[type=submit]")).to_have_text("退出登录")

    # The language menu switches this session to English, and it stays English.
    page.select_option("select[name=language]", "en")
    page.wait_for_load_state()
    expect(page.locator("h1")).to_contain_text("Orders")
    expect(page.locator("select[name=stage] option[value=pending_review]")).to_have_text("Pending review")
    expect(page.locator("header form button[type=submit]")).to_have_text("Log out")
    page.goto(f"/orders/{shop['E2E-000'].id}/")
    expect(page.locator("h2").first).to_have_text("Customer")

    # And back.
    page.select_option("select[name=language]", "zh-hans")
    expect(page.locator("h2").first).to_have_text("客户")


def test_an_english_browser_gets_english_pages(page_for, shop):
    page = page_for("en-US")
    page.goto("/login/")
    expect(page.locator("form button[type=submit]")).to_have_text("Log in")
    log_in(page, "zhangli", "wrong")
    expect(page.get_by_role("alert")).to_have_text(
        "Your username and password didn't match. Please try again."
    )
