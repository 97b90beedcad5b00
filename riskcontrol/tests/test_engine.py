"""The pure rule evaluators: each rule type hits and misses where it should."""

from __future__ import annotations

from decimal import Decimal

import pytest

from riskcontrol.engine import (
    Decision,
    History,
    OrderSnap,
    RuleKind,
    RuleSpec,
    check,
    evaluate,
    learned_weight,
    needs_of,
    posterior_precision,
)

NOW = 1_800_000_000.0
SHENZHEN = (22.5435, 114.0579)
URUMQI = (43.8256, 87.6168)
GUANGZHOU = (23.1291, 113.2644)


def snap(**kw) -> OrderSnap:
    base = {"key": 0, "at": NOW, "amount": Decimal("599.00")}
    return OrderSnap(**(base | kw))


def hit(kind: RuleKind, params: dict, order: OrderSnap, history: History | None = None, seq: int = 0):
    return check(kind, params, order, history or History(), seq)


def test_address_keywords_hit_on_any_word_and_say_which():
    params = {"keywords": ["临时仓", "代收点"]}
    assert hit(RuleKind.ADDRESS_KEYWORDS, params, snap(address="广东省深圳市宝安区福永临时仓3号")) == {
        "keyword": "临时仓"
    }
    assert hit(RuleKind.ADDRESS_KEYWORDS, params, snap(address="广东省深圳市南山区科技园")) is None


def test_ip_velocity_counts_only_earlier_orders_inside_the_window():
    history = History()
    for minutes_ago in (1, 2, 3):
        history.add("ip", "1.2.3.4", NOW - minutes_ago * 60)
    history.add("ip", "1.2.3.4", NOW - 6 * 60)  # outside 5 minutes
    history.add("ip", "9.9.9.9", NOW - 60)  # another IP
    params = {"count": 3, "minutes": 5}
    facts = hit(RuleKind.IP_VELOCITY, params, snap(ip="1.2.3.4"), history)
    assert facts == {"n": 4, "minutes": 5}  # "同一IP 5分钟内第4单"
    assert hit(RuleKind.IP_VELOCITY, params, snap(ip="9.9.9.9"), history) is None
    assert hit(RuleKind.IP_VELOCITY, params, snap(ip=""), history) is None


def test_the_third_order_of_one_batch_sees_the_first_two():
    history = History()
    orders = [snap(key=i, device="dev-1") for i in range(3)]
    for i, order in enumerate(orders):
        history.add_order(order, seq=i)
    params = {"count": 3, "minutes": 5}
    assert hit(RuleKind.DEVICE_VELOCITY, params, orders[1], history, seq=1) is None
    assert hit(RuleKind.DEVICE_VELOCITY, params, orders[2], history, seq=2) == {"n": 3, "minutes": 5}


def test_card_rule_counts_the_same_amount_only():
    history = History()
    for i in range(11):
        history.add("card", ("c" * 64, Decimal("299.00")), NOW - i * 60)
    history.add("card", ("c" * 64, Decimal("300.00")), NOW - 30)
    params = {"count": 12, "hours": 24}
    twelfth = snap(card="c" * 64, amount=Decimal("299.00"))
    assert hit(RuleKind.CARD_SAME_AMOUNT, params, twelfth, history)["n"] == 12
    assert (
        hit(RuleKind.CARD_SAME_AMOUNT, params, snap(card="c" * 64, amount=Decimal("300.00")), history) is None
    )


@pytest.mark.parametrize(
    ("amount", "note", "expected"),
    [("5000.00", "", True), ("5000.00", "送给妈妈", False), ("5000.50", "", False), ("999.00", "", False)],
)
def test_round_amount_without_a_note(amount, note, expected):
    params = {"multiple": 1000, "require_no_note": True}
    assert (
        hit(RuleKind.ROUND_AMOUNT, params, snap(amount=Decimal(amount), note=note)) is not None
    ) is expected


def test_phone_distance_from_the_warehouse_or_the_delivery_city():
    far = snap(phone_city="新疆乌鲁木齐市", phone_coords=URUMQI, warehouse_name="深圳仓", warehouse_coords=SHENZHEN,
               delivery_city="广州市", delivery_coords=GUANGZHOU)  # fmt: skip
    facts = hit(RuleKind.PHONE_DISTANCE, {"km": 2000, "reference": "warehouse"}, far)
    assert facts["place"] == "深圳仓" and facts["km"] > 2000
    assert hit(RuleKind.PHONE_DISTANCE, {"km": 2000, "reference": "delivery"}, far)["place"] == "广州市"
    near = snap(phone_coords=GUANGZHOU, warehouse_coords=SHENZHEN, delivery_coords=GUANGZHOU)
    assert hit(RuleKind.PHONE_DISTANCE, {"km": 2000, "reference": "warehouse"}, near) is None
    unknown = snap(phone_coords=None, warehouse_coords=SHENZHEN)
    assert hit(RuleKind.PHONE_DISTANCE, {"km": 2000, "reference": "warehouse"}, unknown) is None


def test_new_account_first_order_with_a_coupon():
    params = {"days": 7}
    assert hit(RuleKind.NEW_ACCOUNT_COUPON, params, snap(coupon="NEW50", account_age_days=1.0)) is not None
    assert hit(RuleKind.NEW_ACCOUNT_COUPON, params, snap(coupon="", account_age_days=1.0)) is None
    assert hit(RuleKind.NEW_ACCOUNT_COUPON, params, snap(coupon="NEW50", account_age_days=400.0)) is None
    second = snap(coupon="NEW50", account_age_days=1.0, customer_prior_orders=1)
    assert hit(RuleKind.NEW_ACCOUNT_COUPON, params, second) is None
    # An account we know nothing about, ordering for the first time, is new.
    assert hit(RuleKind.NEW_ACCOUNT_COUPON, params, snap(coupon="NEW50", account_age_days=None)) is not None


def test_amount_over_the_customers_usual_falls_back_to_the_channel():
    params = {"k": 3.0, "basis": "customer", "min_history": 3}
    regular = snap(amount=Decimal("1000"), customer_prior_orders=5, customer_avg_amount=Decimal("200"),
                   channel_avg_amount=Decimal("900"))  # fmt: skip
    assert hit(RuleKind.AMOUNT_OVER_USUAL, params, regular)["basis"] == "customer"
    newcomer = snap(amount=Decimal("1000"), customer_prior_orders=0, channel_avg_amount=Decimal("300"))
    facts = hit(RuleKind.AMOUNT_OVER_USUAL, params, newcomer)
    assert facts["basis"] == "channel" and facts["ratio"] == 3.3
    assert (
        hit(
            RuleKind.AMOUNT_OVER_USUAL, params, snap(amount=Decimal("800"), channel_avg_amount=Decimal("300"))
        )
        is None
    )
    assert hit(RuleKind.AMOUNT_OVER_USUAL, params, snap(amount=Decimal("800"))) is None  # no usual known


def test_blacklist_hits_only_the_lists_the_rule_names():
    order = snap(blacklisted=(("device", "dev-9", "chargeback"),))
    assert hit(RuleKind.BLACKLIST, {"kinds": ["device", "ip"]}, order) == {
        "list": "device", "value": "dev-9", "reason": "chargeback",
    }  # fmt: skip
    assert hit(RuleKind.BLACKLIST, {"kinds": ["ip"]}, order) is None


def test_composite_needs_every_condition():
    params = {
        "all": [
            {"kind": "new_account", "params": {"days": 30}},
            {"kind": "amount_over_usual", "params": {"k": 3.0, "basis": "channel", "min_history": 3}},
            {"kind": "address_keywords", "params": {"keywords": ["中转仓"]}},
        ]
    }
    bad = snap(
        account_age_days=2.0, amount=Decimal("3000"), channel_avg_amount=Decimal("500"), address="X市中转仓"
    )
    facts = hit(RuleKind.COMPOSITE, params, bad)
    assert [p["kind"] for p in facts["parts"]] == ["new_account", "amount_over_usual", "address_keywords"]
    old = snap(
        account_age_days=400.0, amount=Decimal("3000"), channel_avg_amount=Decimal("500"), address="X市中转仓"
    )
    assert hit(RuleKind.COMPOSITE, params, old) is None


def test_evaluate_sums_weights_and_compares_with_both_thresholds():
    rules = [
        RuleSpec(1, RuleKind.ROUND_AMOUNT, {"multiple": 1000, "require_no_note": True}, 40),
        RuleSpec(2, RuleKind.ADDRESS_KEYWORDS, {"keywords": ["代收点"]}, 25),
    ]
    kw = {"review_threshold": 30, "quarantine_threshold": 60}
    assert evaluate(snap(amount=Decimal("2000")), rules, History(), **kw).decision == Decision.FLAG
    both = evaluate(snap(amount=Decimal("2000"), address="菜鸟代收点"), rules, History(), **kw)
    assert both.decision == Decision.QUARANTINE and both.score == 65
    assert evaluate(snap(), rules, History(), **kw).decision == Decision.PASS


def test_needs_reads_inside_composites():
    needs = needs_of(
        [
            RuleSpec(1, RuleKind.IP_VELOCITY, {"count": 3, "minutes": 5}, 10),
            RuleSpec(
                2,
                RuleKind.COMPOSITE,
                {
                    "all": [
                        {"kind": "ip_velocity", "params": {"count": 2, "minutes": 60}},
                        {"kind": "phone_distance", "params": {"km": 2000, "reference": "warehouse"}},
                    ]
                },
                10,
            ),
        ]
    )
    assert needs.ip_minutes == 60 and needs.phone_coords and needs.warehouse
    assert not needs.customer and needs.card_hours == 0


def test_posterior_stays_near_the_prior_with_few_cases_and_follows_many():
    few = posterior_precision(0, 2, prior_precision=0.5, strength=10)
    assert 0.4 < few < 0.5
    many = posterior_precision(13, 87, prior_precision=0.5, strength=10)
    assert many == pytest.approx(18 / 110)


def test_learned_weight_moves_toward_the_target_within_bounds():
    down = learned_weight(base=60, precision=0.16, neutral=0.5, low=10, high=100, current=60, step=0.5)
    assert 10 <= down < 60
    up = learned_weight(base=60, precision=0.95, neutral=0.5, low=10, high=80, current=60, step=1.0)
    assert up == 80  # capped by the bound
    floor = learned_weight(base=60, precision=0.01, neutral=0.5, low=25, high=100, current=26, step=1.0)
    assert floor == 25
