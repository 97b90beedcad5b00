"""The supervisors' board in a real browser (Debian Chromium through Playwright) against daphne
on this test's database, with Redis as the channel layer: two supervisors watch one board and
one drags a card from picking to shipping, the other sees it move; illegal drags snap back
with the reason; a card opens its timeline; an alert raised on the server pops up as a toast
and is acknowledged.

The last test also renders docs/screenshot-board.png and docs/screenshot-queue.png; they are
written to docs/ only when PAIDAN_SCREENSHOTS=1 (else to the test's temporary folder), so a
plain test run never changes the repository:
    PAIDAN_SCREENSHOTS=1 pytest tests/test_board_browser.py -k screenshots"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect

from dashboards.alerts import alert_raise
from dashboards.models import Alert
from orders.actors import system_actor
from orders.exceptions import exception_raise
from orders.models import ExceptionCase, Order
from orders.services import order_ingest_batch, order_transition
from orders.states import Role
from tests.factories import PASSWORD, AgentFactory, ChannelFactory, RegionFactory, UserFactory, order_payload
from tests.test_pages_browser import browser, log_in, off_the_loop  # noqa: F401 - browser is a fixture
from tests.test_queue_browser import daphne, redis_layer  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parent.parent / "docs"
WIDE = {"width": 1480, "height": 900}


@pytest.fixture
def board_page(browser, daphne) -> Iterator:  # noqa: F811 - the imported fixtures
    contexts = []

    def open_as(username: str, *, locale: str = "en-US", viewport: dict | None = None) -> Page:
        context = browser.new_context(locale=locale, base_url=daphne.base, viewport=viewport or WIDE)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        log_in(page, username, PASSWORD)
        page.goto("/board/")
        expect(page.locator("#board")).to_have_class(re.compile(r"\bb-connected\b"))
        page.wait_for_load_state("networkidle")  # the read on connect has landed
        return page

    yield open_as
    for context in contexts:
        context.close()


def make_roles() -> None:
    # A transactional test's flush drops the groups, exception types and SLA policies the
    # data migrations made.
    from orders.defaults import install_defaults
    from orders.models import ExceptionType, SlaPolicy

    for role in Role:
        if role != Role.SYSTEM:
            Group.objects.get_or_create(name=role)
    install_defaults(SlaPolicy, ExceptionType)


CUSTOMERS = [
    ("王小明", "13510001000", "广东省深圳市南山区科技园南区8栋1203", "羽绒服", "599.00"),
    ("李晓燕", "13800138111", "广东省广州市天河区体育西路103号", "空气炸锅", "399.00"),
    ("赵建国", "13912345678", "广东省深圳市福田区深南大道6008号", "电饭煲", "299.00"),
    ("陈思远", "18612345678", "广东省佛山市禅城区祖庙路33号", "蓝牙耳机", "259.00"),
    ("周雨桐", "15012345678", "广东省东莞市南城区鸿福路200号", "羊毛围巾", "129.00"),
    ("黄志强", "17712345678", "广东省珠海市香洲区情侣中路47号", "阳澄湖大闸蟹礼盒", "488.00"),
    ("吴佳怡", "13612345670", "广东省深圳市宝安区新安六路1008号", "儿童绘本套装", "89.90"),
    ("郑浩然", "15812345671", "广东省惠州市惠城区江北三新南路22号", "智利车厘子 2kg", "238.00"),
    ("孙婷婷", "18712345672", "广东省中山市石岐区孙文中路166号", "空调清洗上门服务", "150.00"),
    ("马俊杰", "13712345673", "广东省汕头市龙湖区长平路93号", "洗衣机维修", "80.00"),
    ("朱欣怡", "15112345674", "广东省江门市蓬江区建设路18号", "电动牙刷", "199.00"),
    ("胡一鸣", "18612345675", "广东省湛江市赤坎区人民大道北41号", "保温杯", "89.00"),
    ("林子涵", "13512345676", "广东省深圳市罗湖区人民南路3002号", "扫地机器人", "1899.00"),
    ("高建华", "13912345677", "广东省广州市越秀区北京路238号", "茶具套装", "368.00"),
]


def ingest_orders(prefix: str, count: int, channel: str = "jd", first: int = 0) -> list[Order]:
    payloads = []
    for n in range(count):
        name, phone, address, item, price = CUSTOMERS[(first + n) % len(CUSTOMERS)]
        payloads.append(
            order_payload(
                channel=channel,
                external_id=f"{prefix}-{n:03d}",
                customer={"name": name, "phone": phone, "account_id": f"acct-{prefix}-{n}"},
                address=address,
                items=[{"sku": f"SKU-{n}", "name": item, "qty": 1, "price": price}],
                amount=price,
            )
        )
    results = order_ingest_batch(payloads=payloads, actor=system_actor("api:jd"))
    assert [r.status for r in results] == ["created"] * count, [r.errors for r in results]
    return [Order.objects.get(pk=r.id) for r in results]


def move(order: Order, *stages: str, reason: str = "") -> None:
    for stage in stages:
        order_transition(order_id=order.pk, to=stage, actor=system_actor("test"), reason=reason)


def column(page: Page, stage: str) -> Locator:
    return page.locator(f'.b-col[data-stage="{stage}"]')


def card(page: Page, order: Order) -> Locator:
    return page.locator(f'.b-card[data-id="{order.pk}"]')


def drag(page: Page, item: Locator, target: Locator) -> None:
    """Press, move in small steps and release, as a hand does: SortableJS (pointer-event
    fallback) starts a drag only after the pointer moves."""
    start = item.bounding_box()
    end = target.locator(".b-cards").bounding_box()
    x, y = start["x"] + start["width"] / 2, start["y"] + 12
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 8, y + 8, steps=4)
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + min(30, end["height"] / 2), steps=20)
    page.mouse.move(end["x"] + end["width"] / 2 + 2, end["y"] + min(32, end["height"] / 2), steps=2)
    page.mouse.up()


@pytest.fixture
def south():
    """The south's two supervisors, a warehouse clerk and orders in the first stages."""

    def given():
        make_roles()
        ChannelFactory(code="jd", name="京东", tag_prefix="JD")
        region = RegionFactory(code="south", name="华南", provinces=["广东省"])
        for username in ("zhangli", "wangqiang"):
            region.supervisors.add(UserFactory(username=username, roles=["supervisor"]))
        UserFactory(username="laoliu", roles=["warehouse"])
        orders = ingest_orders("BRD", 4)
        move(orders[0], "picking", reason="审核通过")
        move(orders[1], "picking", reason="审核通过")
        return orders

    return off_the_loop(given)


def test_one_supervisor_drags_a_card_to_shipping_and_the_other_sees_it_move(board_page, south):
    # given two supervisors of the south with the board open in two browsers
    mover = south[0]
    first = board_page("zhangli")
    second = board_page("wangqiang")
    for page in (first, second):
        expect(column(page, "picking").locator(".b-card")).to_have_count(2)
        expect(column(page, "picking").locator(".b-count")).to_have_text("2")
        expect(column(page, "shipping").locator(".b-count")).to_have_text("0")

    # when the first drags a card from picking to shipping
    with first.expect_response(lambda r: r.url.endswith(f"/api/orders/{mover.pk}/transition/")) as answer:
        drag(first, card(first, mover), column(first, "shipping"))
    assert answer.value.status == 200
    answered = time.monotonic()

    # then the other board shows it in shipping within a second, without a reload
    second.evaluate("window.notReloaded = true")
    expect(column(second, "shipping").locator(f'.b-card[data-id="{mover.pk}"]')).to_have_count(
        1, timeout=3000
    )
    seen_after = time.monotonic() - answered
    assert seen_after < 1.0, f"the other board saw the move after {seen_after:.2f} s"
    expect(column(second, "picking").locator(".b-card")).to_have_count(1)
    expect(column(second, "shipping").locator(".b-count")).to_have_text("1")
    expect(column(second, "picking").locator(".b-count")).to_have_text("1")
    assert second.evaluate("window.notReloaded") is True
    # and the mover's own board says so and keeps the card where it was dropped
    expect(first.locator("#b-message")).to_contain_text(f"{mover.tag} moved to Shipping.")
    expect(column(first, "shipping").locator(f'.b-card[data-id="{mover.pk}"]')).to_have_count(1)
    # and the server recorded the move, made by the person who dragged
    fresh = off_the_loop(lambda: Order.objects.get(pk=mover.pk))
    assert fresh.stage == "shipping"
    assert off_the_loop(lambda: fresh.events.filter(kind="transition").last().actor) == "zhangli"


def test_illegal_drags_snap_back_with_the_reason_and_change_nothing(board_page, south):
    pending = south[2]

    # given a supervisor, who may make any legal move: pending review → done is not one
    page = board_page("zhangli")
    drag(page, card(page, pending), column(page, "done"))

    # then the card is back in pending review and the reason is shown in words
    expect(page.locator("#b-message")).to_contain_text(
        f"{pending.tag} cannot move from Pending review to Done. "
        "From Pending review it can go to: Cancelled, Exception, Picking, Quarantined."
    )
    expect(page.locator("#b-message")).to_have_class(re.compile(r"\bb-error\b"))
    expect(column(page, "pending_review").locator(f'.b-card[data-id="{pending.pk}"]')).to_have_count(1)
    expect(column(page, "done").locator(".b-card")).to_have_count(0)

    # given the warehouse, whose role moves only picking and shipping: a legal move it may not make
    clerk = board_page("laoliu")
    drag(clerk, card(clerk, pending), column(clerk, "picking"))
    expect(clerk.locator("#b-message")).to_contain_text(
        f"Your role may not move {pending.tag} from Pending review to Picking."
    )
    expect(column(clerk, "pending_review").locator(f'.b-card[data-id="{pending.pk}"]')).to_have_count(1)
    expect(column(clerk, "picking").locator(f'.b-card[data-id="{pending.pk}"]')).to_have_count(0)

    # and nothing changed on the server
    fresh = off_the_loop(lambda: Order.objects.get(pk=pending.pk))
    assert fresh.stage == "pending_review"
    assert off_the_loop(lambda: fresh.events.filter(kind="transition").count()) == 0


def test_a_card_opens_the_orders_timeline_in_a_drawer(board_page, south):
    order = south[0]
    page = board_page("zhangli")
    card(page, order).click()
    drawer = page.locator("#b-drawer")
    expect(drawer).to_be_visible()
    expect(drawer.locator("#b-drawer-title")).to_have_text(order.tag)
    expect(drawer.locator(".b-d-customer")).to_have_text("王小明")
    # every event of the order's audit trail, oldest first, in words
    count = off_the_loop(lambda: order.events.count())
    events = drawer.locator(".b-timeline li")
    expect(events).to_have_count(count)
    expect(events.nth(0)).to_contain_text("Received")
    expect(events.nth(0)).to_contain_text("api:jd")
    moved = events.filter(has_text="Stage change")
    expect(moved).to_have_count(1)
    expect(moved).to_contain_text("test")
    expect(moved).to_contain_text("Pending review → Picking")
    expect(moved).to_contain_text("审核通过")
    expect(drawer.locator(".b-d-link")).to_have_attribute("href", f"/orders/{order.pk}/")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()


def test_an_alert_raised_on_the_server_pops_up_and_is_acknowledged(board_page, south):
    order = south[3]
    page = board_page("zhangli")
    # (the orders wait with nobody to take them: dispatch has raised its L2 alerts already)
    before = off_the_loop(lambda: Alert.objects.filter(acknowledged_at__isnull=True).count())
    expect(page.locator("#b-alert-count")).to_have_text(str(before))

    # when the overdue scan escalates an order of the south to its supervisors (L3)
    def escalate() -> Alert:
        from agents.models import Region

        return alert_raise(
            kind=Alert.Kind.SLA_L3,
            level=3,
            key=f"sla_l3:{order.pk}",
            message=f"{order.tag} 超时未处理，已升级给主管",
            now=timezone.now(),
            order_id=order.pk,
            region=Region.objects.get(code="south"),
        )

    alert = off_the_loop(escalate)

    # then it pops up as a red toast with a link to the order, and the badge counts it
    toast = page.locator(f'#b-toasts .b-alert[data-id="{alert.pk}"]')
    expect(toast).to_be_visible(timeout=3000)
    expect(toast).to_contain_text(f"{order.tag} 超时未处理，已升级给主管")
    expect(toast).to_contain_text("Overdue order escalated to the supervisor (L3)")
    expect(toast).to_have_class(re.compile(r"\bb-level-3\b"))
    expect(page.locator("#b-alert-count")).to_have_text(str(before + 1))
    # and the link opens the order in the drawer
    toast.locator(".b-alert-order").click()
    expect(page.locator("#b-drawer-title")).to_have_text(order.tag)
    page.keyboard.press("Escape")

    # when the supervisor acknowledges it
    toast.get_by_role("button", name="Acknowledge").click()

    # then it leaves the page, the badge empties, and the server knows who
    expect(page.locator(f'.b-alert[data-id="{alert.pk}"]')).to_have_count(0)
    expect(page.locator("#b-message")).to_contain_text("Alert acknowledged.")
    expect(page.locator("#b-alert-count")).to_have_text(str(before))
    fresh = off_the_loop(lambda: Alert.objects.select_related("acknowledged_by").get(pk=alert.pk))
    assert fresh.acknowledged_by.username == "zhangli" and fresh.acknowledged_at is not None


# --- Screenshots for the README ------------------------------------------------------------------
def _board_world() -> None:
    """A morning on the south's board: a few cards in every column, an overdue one, a risk-
    flagged one, an exception with its type and owner, and one held by risk control."""
    make_roles()
    ChannelFactory(code="jd", name="京东", tag_prefix="JD")
    ChannelFactory(code="taobao", name="淘宝", tag_prefix="TB")
    region = RegionFactory(code="south", name="华南", provinces=["广东省"])
    region.supervisors.add(UserFactory(username="zhangli", roles=["supervisor"]))
    agents = [
        AgentFactory(user__username=u, display_name=n, status="busy", capacity=8)
        for u, n in (("xiaowang", "小王"), ("xiaoli", "小李"), ("xiaochen", "小陈"))
    ]
    jd = ingest_orders("SHOT", 10)
    tb = ingest_orders("SHOT-TB", 5, channel="taobao", first=10)
    orders = jd + tb
    now = timezone.now()
    plan = {
        "pending_review": orders[0:3],
        "picking": orders[3:7],
        "shipping": orders[7:10],
        "done": orders[10:13],
    }
    for stage, group in plan.items():
        path = {"pending_review": [], "picking": ["picking"], "shipping": ["picking", "shipping"],
                "done": ["picking", "shipping", "done"]}[stage]  # fmt: skip
        for order in group:
            move(order, *path, reason="")
    for i, order in enumerate(orders[3:13]):
        Order.objects.filter(pk=order.pk).update(owner=agents[i % 3].user)
    # one red: past its due time in picking
    Order.objects.filter(pk=orders[4].pk).update(
        due_at=now - timedelta(minutes=47), stage_entered_at=now - timedelta(hours=4, minutes=47)
    )
    # one flagged by risk control, still pending review
    Order.objects.filter(pk=orders[1].pk).update(
        flags=["risk", "address_ambiguous"], is_flagged=True, risk_score=55
    )
    # an exception: out of stock, owned by 小李
    exception_raise(
        order_id=orders[13].pk, type_code="out_of_stock", actor=system_actor("test"), note="仓库缺货"
    )
    ExceptionCase.objects.filter(order=orders[13]).update(owner=agents[1])
    # held by risk control
    move(orders[14], "quarantined", reason="临时仓地址")
    Order.objects.filter(pk=orders[14].pk).update(flags=["risk"], is_flagged=True, risk_score=82)
    alert_raise(kind=Alert.Kind.RISK_QUARANTINE, level=2, key="shot-q", now=now, order_id=orders[14].pk,
                region=region, message=f"{orders[14].tag} 风控拦截：收货地址为临时仓")  # fmt: skip


def test_screenshots_of_the_board_and_the_queue(board_page, browser, daphne, tmp_path):  # noqa: F811
    target = DOCS if os.environ.get("PAIDAN_SCREENSHOTS") == "1" else tmp_path
    off_the_loop(_board_world)
    # In Chinese, as the product's users see it (the site's default language).
    page = board_page("zhangli", locale="zh-CN", viewport={"width": 1480, "height": 820})
    for stage, n in (
        ("pending_review", 3),
        ("picking", 4),
        ("shipping", 3),
        ("done", 3),
        ("exception", 1),
        ("quarantined", 1),
    ):
        expect(column(page, stage).locator(".b-card")).to_have_count(n)
    expect(page.locator(".b-card.b-late")).to_have_count(1)
    expect(page.locator(".b-card .b-flag-risk")).to_have_count(2)
    expect(column(page, "exception").locator(".b-exception")).to_contain_text("缺货 小李")
    expect(page.locator("#b-alert-count")).not_to_have_text("0")
    page.screenshot(path=str(target / "screenshot-board.png"))
    assert (target / "screenshot-board.png").stat().st_size > 20_000

    # the agent's queue page, on a phone, with offers counting down: an agent comes online and
    # the next order's dispatch round offers them what waits
    def offered() -> list[str]:
        from dispatch.models import Assignment

        agent = AgentFactory(user__username="xiaozhou", display_name="小周", status="online", capacity=3)
        ingest_orders("SHOT-Q", 1, first=3)
        return list(
            Assignment.objects.filter(agent=agent, state="offered").values_list("order__tag", flat=True)
        )

    tags = off_the_loop(offered)
    assert tags, "the agent coming online was offered nothing"
    context = browser.new_context(
        locale="zh-CN", base_url=daphne.base, viewport={"width": 390, "height": 780}
    )
    context.set_default_timeout(10_000)
    phone = context.new_page()
    log_in(phone, "xiaozhou", PASSWORD)
    phone.goto("/queue/")
    expect(phone.locator("#queue")).to_have_class(re.compile(r"\bq-live\b"))
    expect(phone.locator("#q-offers .q-list > li")).to_have_count(len(tags))
    expect(phone.locator("#q-offers .q-countdown").first).to_have_text(re.compile(r"^\d\d:\d\d$"))
    phone.screenshot(path=str(target / "screenshot-queue.png"))
    context.close()
    assert (target / "screenshot-queue.png").stat().st_size > 10_000
