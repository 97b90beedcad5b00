from decimal import Decimal

from orders.mapping import apply_mapping
from orders.normalize import (
    detect_kind,
    external_id_problem,
    hash_card_fingerprint,
    normalize_external_id,
    normalize_phone,
    parse_address,
)
from orders.states import IllegalTransition, Role, RoleMayNotTransition, Stage, check_transition


def test_address_with_province_city_district_gets_coordinates():
    parsed = parse_address("广东省深圳市南山区科技园南区8栋")
    assert (parsed.province, parsed.city, parsed.district) == ("广东省", "深圳市", "南山区")
    assert parsed.adcode == "440305"
    assert Decimal("22") < parsed.latitude < Decimal("23")
    assert not parsed.ambiguous


def test_municipality_city_is_the_municipality_not_shixiaqu():
    parsed = parse_address("北京市朝阳区建国路88号")
    assert parsed.city == "北京市"


def test_address_without_a_city_is_kept_and_ambiguous():
    parsed = parse_address("学校门口小卖部")
    assert parsed.ambiguous
    assert parsed.latitude is None


def test_phone_normalised_to_e164_with_home_city():
    phone = normalize_phone("135-1000-1000")
    assert phone.valid and phone.e164 == "+8613510001000"
    assert phone.home_city == "广东省深圳市"


def test_malformed_phone_is_invalid_not_an_error():
    assert not normalize_phone("12345").valid
    assert not normalize_phone("not a phone").valid


def test_lookalike_external_ids_fold_to_one():
    assert normalize_external_id("ＪＤ１２３\u200b ") == "JD123"
    assert external_id_problem(normalize_external_id("\u200b")) == "is empty"
    assert external_id_problem("JD\x00123") == "contains control characters"


def test_kind_from_note_keywords():
    assert detect_kind("客户要求补发一件") == "reshipment"
    assert detect_kind("售后换货，尺码不对") == "exchange"
    assert detect_kind("请尽快发货") is None


def test_card_fingerprint_is_hashed_once():
    hashed = hash_card_fingerprint("4111111111111111")
    assert len(hashed) == 64 and hashed != "4111111111111111"
    assert hash_card_fingerprint(hashed) == hashed


def test_mapping_walks_paths_lists_and_customer_fields():
    mapping = {
        "external_id": "order_sn",
        "customer.name": "buyer.nick",
        "customer.phone": "buyer.mobile",
        "amount": "pay.total",
        "items": {"path": "goods", "fields": {"sku": "goods_id", "qty": "num", "price": "unit"}},
    }
    body = {
        "order_sn": "DY1",
        "buyer": {"nick": "李雷", "mobile": "13800138000"},
        "pay": {"total": "10.00"},
        "goods": [{"goods_id": "G1", "num": 2, "unit": "5.00", "name": "袜子"}],
    }
    out = apply_mapping(mapping, body)
    assert out["external_id"] == "DY1"
    assert out["customer"] == {"name": "李雷", "phone": "13800138000"}
    assert out["items"] == [{"sku": "G1", "name": "袜子", "qty": 2, "price": "5.00"}]


def test_state_machine_refuses_illegal_and_role_forbidden_moves():
    check_transition(current=Stage.PICKING, target=Stage.SHIPPING, roles=frozenset({Role.WAREHOUSE}))
    try:
        check_transition(current=Stage.DONE, target=Stage.PICKING, roles=frozenset({Role.ADMIN}))
    except IllegalTransition as exc:
        assert "cannot move from 'done'" in str(exc)
    else:
        raise AssertionError("done → picking must be illegal")
    try:
        check_transition(
            current=Stage.PENDING_REVIEW, target=Stage.PICKING, roles=frozenset({Role.WAREHOUSE})
        )
    except RoleMayNotTransition as exc:
        assert "warehouse" in str(exc)
    else:
        raise AssertionError("warehouse may not review")


def test_exception_returns_only_to_the_stage_it_was_raised_in():
    try:
        check_transition(
            current=Stage.EXCEPTION,
            target=Stage.SHIPPING,
            roles=frozenset({Role.SUPERVISOR}),
            held_stage=Stage.PICKING,
        )
    except IllegalTransition as exc:
        assert "returns the order to 'picking'" in str(exc)
    else:
        raise AssertionError("must return to picking")
