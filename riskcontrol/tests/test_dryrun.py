"""The dry run on PostgreSQL: run over orders that were screened live at the door, one rule
flags exactly the orders that rule hit live, counts what reviewers decided about them, and
its admin page is for staff only."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders.actors import system_actor
from orders.models import Order
from orders.services import order_ingest_batch
from riskcontrol.dryrun import rule_dry_run
from riskcontrol.models import Review, RiskPolicy, Rule, RuleHit
from riskcontrol.selectors import clear_caches
from riskcontrol.services import review_decide
from tests.factories import order_payload

pytestmark = pytest.mark.django_db

SOURCE = system_actor("test")


@pytest.fixture(autouse=True)
def _one_rule_at_a_time(db):
    """Only the rule a test makes screens; the general thresholds are the defaults."""
    Rule.objects.update(is_active=False)
    RiskPolicy.objects.filter(channel=None, is_active=True).update(
        review_threshold=30, quarantine_threshold=60
    )
    clear_caches()
    yield
    clear_caches()


def ingest(*payloads: dict, at=None) -> list[Order]:
    if at is None:
        results = order_ingest_batch(payloads=list(payloads), actor=SOURCE)
    else:
        with time_machine.travel(at, tick=False):
            results = order_ingest_batch(payloads=list(payloads), actor=SOURCE)
    assert all(r.status == "created" for r in results), [r.as_dict() for r in results]
    return list(Order.objects.filter(pk__in=[r.id for r in results]).order_by("id"))


def live_hits(rule: Rule, *, since) -> dict[int, dict]:
    """What screening at the door found with this rule, for the orders of the window."""
    return dict(
        RuleHit.objects.filter(rule=rule, order__received_at__gte=since).values_list("order_id", "facts")
    )


def dry(rule: Rule, **kw):
    return rule_dry_run(kind=rule.kind, params=rule.params, samples=1000, **kw)


def assert_same_as_live(rule: Rule, result) -> None:
    live = live_hits(rule, since=result.since)
    assert live, "the scenario must make the rule hit live"
    assert result.flagged == len(live)
    assert {s.order_id: s.facts for s in result.samples} == live


def test_ip_velocity_flags_what_screening_flagged_including_the_look_back(jd, tb):
    rule = Rule.objects.create(
        name="试跑: 同一IP 5分钟3单", kind="ip_velocity", params={"count": 3, "minutes": 5}, weight=60
    )
    now = timezone.now()
    edge = now - timedelta(days=1)  # the dry run's window starts here
    # Two orders just before the window and one just inside: the third needs the look-back.
    ingest(order_payload(external_id="L1", client_ip="36.1.1.1"), at=edge - timedelta(minutes=3))
    ingest(order_payload(external_id="L2", client_ip="36.1.1.1"), at=edge - timedelta(minutes=2))
    (inside,) = ingest(order_payload(external_id="L3", client_ip="36.1.1.1"), at=edge + timedelta(minutes=1))
    # One batch of four from one IP: the third and fourth count the ones before them.
    burst = ingest(*(order_payload(external_id=f"B{i}", client_ip="36.2.2.2") for i in range(4)),
                   at=now - timedelta(hours=5))  # fmt: skip
    # Three from one IP six minutes apart: never three within five minutes.
    for i in range(3):
        ingest(
            order_payload(external_id=f"S{i}", client_ip="36.3.3.3"),
            at=now - timedelta(hours=3, minutes=-6 * i),
        )
    # Another channel's order on the IP counts for this channel's orders too.
    ingest(
        order_payload(channel="taobao", external_id="T1", client_ip="36.4.4.4"), at=now - timedelta(hours=2)
    )
    mixed = ingest(*(order_payload(external_id=f"M{i}", client_ip="36.4.4.4") for i in range(2)),
                   at=now - timedelta(hours=2) + timedelta(seconds=30))  # fmt: skip
    ingest(*(order_payload(external_id=f"X{i}") for i in range(5)), at=now - timedelta(hours=1))

    result = dry(rule, days=1, now=now)

    assert_same_as_live(rule, result)
    assert {s.order_id for s in result.samples} == {inside.pk, burst[2].pk, burst[3].pk, mixed[1].pk}
    assert result.scanned == Order.objects.filter(received_at__gte=edge).count() == 1 + 4 + 3 + 1 + 2 + 5
    assert result.samples[0].order_id == mixed[1].pk  # most recent first
    assert result.samples[0].explanation == RuleHit.objects.get(order_id=mixed[1].pk).explanation

    only_jd = dry(rule, days=1, now=now, channel_id=jd.pk)
    assert only_jd.scanned == result.scanned - 1
    assert {s.order_id for s in only_jd.samples} == {inside.pk, burst[2].pk, burst[3].pk, mixed[1].pk}
    assert dry(rule, days=1, now=now, channel_id=tb.pk).flagged == 0


def test_address_keywords_flags_what_screening_flagged_and_counts_the_reviews(jd, make_user):
    rule = Rule.objects.create(
        name="中转仓地址", kind="address_keywords", params={"keywords": ["临时仓", "代收点"]}, weight=60
    )
    now = timezone.now()
    ingest(order_payload(external_id="OLD", address="广东省深圳市福永临时仓1号"), at=now - timedelta(days=10))
    bad = ingest(
        order_payload(external_id="A1", address="广东省深圳市宝安区福永临时仓3号库"),
        order_payload(external_id="A2", address="浙江省杭州市西湖区文三路菜鸟代收点"),
        order_payload(external_id="A3", address="北京市朝阳区建国路临时仓"),
        order_payload(external_id="A4", address="北京市朝阳区建国路88号"),
        at=now - timedelta(days=2),
    )
    ingest(
        order_payload(external_id="A5", address="上海市浦东新区世纪大道100号"), at=now - timedelta(hours=1)
    )
    boss = make_user("boss", "admin", is_superuser=True, is_staff=True)
    review_decide(review_id=Review.objects.get(order=bad[0]).pk, user=boss, decision="confirmed", note="骗单")
    review_decide(
        review_id=Review.objects.get(order=bad[1]).pk, user=boss, decision="false_positive", note="真实"
    )

    result = dry(rule, days=7, now=now)

    assert_same_as_live(rule, result)
    assert {s.order_id for s in result.samples} == {bad[0].pk, bad[1].pk, bad[2].pk}
    assert (result.scanned, result.flagged, result.confirmed, result.false_positives) == (5, 3, 1, 1)
    assert {s.order_id: s.outcome for s in result.samples} == {
        bad[0].pk: "confirmed", bad[1].pk: "false_positive", bad[2].pk: "",
    }  # fmt: skip
    assert result.precision == 0.5
    # The old order is outside a week but inside a month.
    assert dry(rule, days=30, now=now).flagged == 4


def test_a_composite_flags_what_screening_flagged_replaying_each_customers_history(jd):
    """New account + amount over 3× the customer's usual: the customer's earlier orders
    (before the window and inside it) are replayed as they stood when each order came in."""
    rule = Rule.objects.create(
        name="新号大额",
        kind="composite",
        params={
            "all": [
                {"kind": "new_account", "params": {"days": 30}},
                {"kind": "amount_over_usual", "params": {"k": 3.0, "basis": "customer", "min_history": 2}},
            ]
        },
        weight=60,
    )
    now = timezone.now()
    fresh = (now - timedelta(days=10)).isoformat()

    def order(ext, account, amount, created=fresh):
        return order_payload(
            external_id=ext, amount=amount, customer={"account_id": account, "account_created_at": created},
            items=[{"sku": "S", "name": "商品", "qty": 1, "price": amount}],
        )  # fmt: skip

    # A big old customer's order keeps the channel's usual high: only customers' own usual counts.
    ingest(order("BIG", "whale", "90000.00", created="2020-01-01T00:00:00+08:00"), at=now - timedelta(days=5))
    # A new account: two small orders before the window, the big one inside it.
    ingest(order("Y1", "y", "100.00"), at=now - timedelta(days=3))
    ingest(order("Y2", "y", "100.00"), at=now - timedelta(days=2, hours=1))
    (y_big,) = ingest(order("Y3", "y", "1000.00"), at=now - timedelta(hours=20))
    # An old account with the same pattern is not new.
    ingest(order("Z1", "z", "100.00", created="2020-01-01T00:00:00+08:00"), at=now - timedelta(hours=15))
    ingest(order("Z2", "z", "100.00", created="2020-01-01T00:00:00+08:00"), at=now - timedelta(hours=14))
    ingest(order("Z3", "z", "1000.00", created="2020-01-01T00:00:00+08:00"), at=now - timedelta(hours=13))
    # Two small orders then a big one, all inside the window.
    ingest(order("V1", "v", "120.00"), at=now - timedelta(hours=10))
    ingest(order("V2", "v", "80.00"), at=now - timedelta(hours=9))
    (v_big,) = ingest(order("V3", "v", "500.00"), at=now - timedelta(hours=8))
    # All in one batch: the big one's usual counts only orders stored before the batch.
    ingest(order("W1", "w", "100.00"), order("W2", "w", "100.00"), order("W3", "w", "1000.00"),
           at=now - timedelta(hours=6))  # fmt: skip
    # Not enough history of their own.
    ingest(order("U1", "u", "100.00"), at=now - timedelta(hours=5))
    ingest(order("U2", "u", "1000.00"), at=now - timedelta(hours=4))

    result = dry(rule, days=1, now=now)

    assert_same_as_live(rule, result)
    assert {s.order_id for s in result.samples} == {y_big.pk, v_big.pk}
    y_sample = next(s for s in result.samples if s.order_id == y_big.pk)
    assert y_sample.facts["parts"][1]["facts"]["usual"] == "100.00"
    assert "100.00" in y_sample.explanation


def test_the_dry_run_refuses_bad_input(jd):
    with pytest.raises(ValidationError):
        rule_dry_run(kind="ip_velocity", params={"count": 1}, days=30)
    with pytest.raises(ValidationError):
        rule_dry_run(kind="nonsense", params={}, days=30)
    for days in (0, 366, "30", True):
        with pytest.raises(ValidationError):
            rule_dry_run(kind="ip_velocity", params={}, days=days)


@pytest.mark.parametrize("n", [3, 30])
def test_the_dry_run_reads_in_a_fixed_number_of_queries(jd, n):
    rule = Rule.objects.create(
        name="代收点", kind="address_keywords", params={"keywords": ["代收点"]}, weight=10
    )
    ingest(*(order_payload(external_id=f"Q{i}", address=f"广东省深圳市代收点{i}号") for i in range(n)))
    with CaptureQueriesContext(connection) as queries:
        result = dry(rule, days=1)
    assert result.flagged == result.scanned == n
    # The window's orders in one scan, the decided reviews, the samples' tags: however many.
    selects = [q["sql"] for q in queries.captured_queries if "SELECT" in q["sql"]]
    assert len(selects) == 3, selects


@pytest.fixture
def rule_with_hits(jd):
    rule = Rule.objects.create(
        name="临时仓", kind="address_keywords", params={"keywords": ["临时仓"]}, weight=60
    )
    ingest(order_payload(external_id="D1", address="广东省深圳市福永临时仓"), order_payload(external_id="D2"))
    return rule


def test_the_dry_run_page_runs_for_a_superuser(client, make_user, rule_with_hits):
    client.force_login(make_user("root", "admin", is_superuser=True, is_staff=True))
    url = f"/admin/riskcontrol/rule/{rule_with_hits.pk}/dry-run/"
    form = client.get(url)
    assert form.status_code == 200 and form.context["result"] is None
    page = client.get(url, {"days": 30, "channel": ""})
    assert page.status_code == 200
    result = page.context["result"]
    assert (result.scanned, result.flagged) == (2, 1)
    order = Order.objects.get(external_id="D1")
    html = page.content.decode()
    assert f'href="/orders/{order.pk}/"' in html and order.tag in html
    assert 'id="dry-run-flagged">1 (50.0%)' in html
    refused = client.get(url, {"days": 400})
    assert refused.status_code == 200 and refused.context["result"] is None
    assert "days" in refused.context["form"].errors


def test_the_dry_run_page_refuses_a_user_who_is_not_staff(client, make_user, rule_with_hits):
    client.force_login(make_user("agent1", "agent"))
    page = client.get(f"/admin/riskcontrol/rule/{rule_with_hits.pk}/dry-run/", {"days": 30})
    assert page.status_code == 302 and "/admin/login/" in page["Location"]


def test_every_default_rule_flags_what_it_flagged_at_the_door(jd, tb):
    """All the default rules on together over three days of mixed orders: each, dry-run
    alone, flags exactly the orders it hit live, with the same facts."""
    from decimal import Decimal

    from agents.models import Skill
    from orders.models import Warehouse
    from riskcontrol.defaults import install_defaults
    from riskcontrol.models import BlacklistEntry

    install_defaults(Rule, RiskPolicy, Skill)
    Rule.objects.update(is_active=True)
    clear_caches()  # a bulk update sends no signal: drop the cached rules
    Warehouse.objects.create(code="sz", name="深圳仓", city="深圳市", latitude=Decimal("22.5435"),
                             longitude=Decimal("114.0579"), provinces=["广东省"], is_default=True)  # fmt: skip
    BlacklistEntry.objects.create(kind="ip", value="36.9.9.9", reason="拒付")
    BlacklistEntry.objects.create(kind="address", value="幸福路13号", reason="骗货")
    now = timezone.now()
    start = now - timedelta(days=3)
    fresh = (start - timedelta(days=2)).isoformat()

    def at(minutes: float):
        return start + timedelta(minutes=minutes)

    # Ordinary shoppers, some returning, across both channels.
    for i in range(12):
        channel = "taobao" if i % 3 == 0 else "jd"
        ingest(order_payload(channel=channel, external_id=f"N{i}", amount=f"{150 + 37 * i}.00",
                             customer={"account_id": f"n{i % 5}"},
                             items=[{"sku": "S", "name": "商品", "qty": 1, "price": f"{150 + 37 * i}.00"}]),
               at=at(60 * i))  # fmt: skip
    # A burst on one IP and one device, partly in one batch.
    ingest(*(order_payload(external_id=f"IP{i}", client_ip="36.1.2.3", device_id="dev-burst") for i in range(2)),
           at=at(1000))  # fmt: skip
    ingest(order_payload(external_id="IP2", client_ip="36.1.2.3", device_id="dev-burst"), at=at(1002))
    ingest(order_payload(channel="taobao", external_id="IP3", client_ip="36.1.2.3"), at=at(1003))
    # Same card, same amount, hours apart.
    for i in range(4):
        ingest(order_payload(external_id=f"C{i}", card_fingerprint="6222020200112233445", amount="299.00",
                             items=[{"sku": "X", "name": "耳机", "qty": 1, "price": "299.00"}]),
               at=at(1200 + 90 * i))  # fmt: skip
    # Round amounts, a far phone, transit addresses, blacklists.
    ingest(order_payload(external_id="R1", amount="5000.00", items=[{"sku": "G", "name": "金", "qty": 1, "price": "5000.00"}]),
           order_payload(external_id="R2", amount="3000.00", note="年会礼品", items=[{"sku": "G", "name": "金", "qty": 1, "price": "3000.00"}]),
           at=at(2000))  # fmt: skip
    ingest(
        order_payload(external_id="P1", customer={"phone": "13899800000", "account_id": "far"}), at=at(2100)
    )
    ingest(order_payload(external_id="A1", address="广东省东莞市长安镇集运中转仓B区"), at=at(2200))
    ingest(order_payload(external_id="B1", client_ip="36.9.9.9"), order_payload(external_id="B2", address="广东省深圳市幸福路13号"),
           at=at(2300))  # fmt: skip
    # New accounts: a first order with a coupon, and a big one to a transit warehouse.
    ingest(order_payload(external_id="NC1", coupon_code="NEW50", customer={"account_id": "mule-0", "account_created_at": fresh}),
           at=at(2400))  # fmt: skip
    ingest(order_payload(external_id="NC2", coupon_code="NEW50", customer={"account_id": "mule-0", "account_created_at": fresh}),
           at=at(2410))  # fmt: skip
    # The channel's usual amount is read once and kept (as in a worker): from the orders so far.
    clear_caches()
    ingest(order_payload(external_id="X1", amount="9599.00", note="尽快", address="广东省东莞市长安镇集运中转仓B区",
                         items=[{"sku": "T", "name": "手机", "qty": 1, "price": "9599.00"}],
                         customer={"account_id": "mule-1", "account_created_at": fresh}),
           at=at(2500))  # fmt: skip
    # A customer whose last order is far over their usual.
    for i, amount in enumerate(("100.00", "120.00", "80.00", "2000.00")):
        ingest(order_payload(external_id=f"W{i}", amount=amount, customer={"account_id": "whale"},
                             items=[{"sku": "S", "name": "商品", "qty": 1, "price": amount}]),
               at=at(3000 + 30 * i))  # fmt: skip

    hit_kinds = set(RuleHit.objects.values_list("kind", flat=True))
    assert hit_kinds >= {"address_keywords", "ip_velocity", "device_velocity", "card_same_amount", "round_amount",
                         "phone_distance", "new_account_coupon", "amount_over_usual", "blacklist", "composite"}, hit_kinds  # fmt: skip
    for rule in Rule.objects.filter(is_active=True):
        result = dry(rule, days=4, now=now)
        live = live_hits(rule, since=result.since)
        assert result.scanned == Order.objects.count()
        assert {s.order_id: s.facts for s in result.samples} == live, rule.kind


def test_times_read_as_epoch_seconds_equal_pythons(jd):
    from riskcontrol.dryrun import Epoch

    ingest(*(order_payload(external_id=f"E{i}") for i in range(3)))
    ingest(order_payload(external_id="E3"), at=timezone.now() - timedelta(days=3, microseconds=7))
    rows = Order.objects.annotate(at=Epoch("received_at")).values_list("at", "received_at")
    assert len(rows) == 4
    assert all(at == received_at.timestamp() for at, received_at in rows)
