"""The risk-control admin on PostgreSQL: bad rule parameters are refused on the parameters
field and nothing is stored, hand-set weights are recorded, blacklist values are normalised,
warehouses are validated, and what the software wrote stays read-only."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from orders.actors import system_actor
from orders.models import Warehouse
from orders.services import order_ingest_batch
from riskcontrol.models import BlacklistEntry, Review, RiskPolicy, Rule, RuleHit, RuleWeightChange
from riskcontrol.params import clean_params
from riskcontrol.selectors import clear_caches
from tests.factories import order_payload

pytestmark = pytest.mark.django_db

RULES = "/admin/riskcontrol/rule/"


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def root_client(client, make_user):
    client.force_login(make_user("root", "admin", is_superuser=True, is_staff=True))
    return client


def rule_data(**overrides) -> dict:
    """What the rule change form posts (the weight history inline posts nothing)."""
    data = {
        "name": "同一IP 10分钟5单",
        "kind": "ip_velocity",
        "description": "",
        "is_active": "on",
        "params": "{}",
        "weight": "40",
        "min_weight": "5",
        "max_weight": "100",
        "channel": "",
        "effective_from_0": "",
        "effective_from_1": "",
        "effective_until_0": "",
        "effective_until_1": "",
        "weight_changes-TOTAL_FORMS": "0",
        "weight_changes-INITIAL_FORMS": "0",
        "weight_changes-MIN_NUM_FORMS": "0",
        "weight_changes-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    if not isinstance(data["params"], str):
        data["params"] = json.dumps(data["params"], ensure_ascii=False)
    return data


def expected_problem(kind: str, params: dict) -> list[str]:
    with translation.override("zh-hans"), pytest.raises(ValidationError) as caught:
        clean_params(kind, params)
    return caught.value.messages


BAD_RULES = [
    pytest.param("ip_velocity", {"count": 3, "speed": 9}, "speed", id="unknown-parameter"),
    pytest.param("ip_velocity", {"count": 1, "minutes": 5}, "count", id="count-below-bounds"),
    pytest.param("device_velocity", {"count": 3, "minutes": 20000}, "minutes", id="minutes-above-bounds"),
    pytest.param("card_same_amount", {"count": 12, "hours": "24"}, "hours", id="wrong-type"),
    pytest.param("address_keywords", {"keywords": "临时仓"}, "keywords", id="words-not-a-list"),
    pytest.param("phone_distance", {"reference": "moon"}, "reference", id="not-a-choice"),
    pytest.param("round_amount", {"require_no_note": "yes"}, "require_no_note", id="flag-not-boolean"),
    pytest.param("composite", {"all": [{"kind": "new_account"}]}, "2", id="composite-one-condition"),
    pytest.param(
        "composite",
        {
            "all": [
                {"kind": "new_account"},
                {"kind": "composite", "params": {"all": [{"kind": "new_account"}, {"kind": "round_amount"}]}},
            ]
        },
        "2",  # "Condition 2: …"
        id="nested-composite",
    ),
    pytest.param(
        "composite",
        {"all": [{"kind": "new_account"}, {"kind": "ip_velocity", "params": {"count": 0}}]},
        "count",
        id="composite-bad-condition",
    ),
]


@pytest.mark.parametrize(("kind", "params", "names"), BAD_RULES)
def test_admin_refuses_bad_parameters_on_the_params_field(root_client, kind, params, names):
    before = Rule.objects.count()
    response = root_client.post(f"{RULES}add/", rule_data(kind=kind, params=params))
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["params"], errors
    assert errors["params"] == expected_problem(kind, params)
    assert names in " ".join(errors["params"])
    assert Rule.objects.count() == before
    assert not Rule.objects.filter(name="同一IP 10分钟5单").exists()


def test_admin_refuses_parameters_that_are_not_json(root_client):
    before = Rule.objects.count()
    response = root_client.post(f"{RULES}add/", rule_data(params='{"count": 3,'))
    assert response.status_code == 200
    assert "params" in response.context["adminform"].form.errors
    assert Rule.objects.count() == before


def test_a_bad_change_to_a_stored_rule_leaves_it_as_it_was(root_client):
    rule = Rule.objects.create(
        name="同卡同额", kind="card_same_amount", params={"count": 3, "hours": 24}, weight=60
    )
    response = root_client.post(
        f"{RULES}{rule.pk}/change/",
        rule_data(name=rule.name, kind=rule.kind, params={"count": 99999}, weight="20"),
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["params"] == expected_problem(
        "card_same_amount", {"count": 99999}
    )
    rule.refresh_from_db()
    assert rule.params == {"count": 3, "hours": 24} and rule.weight == 60
    assert not RuleWeightChange.objects.filter(rule=rule).exists()


def test_a_good_rule_is_saved_with_its_defaults_filled_in(root_client):
    response = root_client.post(f"{RULES}add/", rule_data(params={"count": 5, "minutes": 10}))
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    rule = Rule.objects.get(name="同一IP 10分钟5单")
    assert rule.params == {"count": 5, "minutes": 10}
    assert rule.weight == 40 and rule.base_weight == 40

    root_client.post(f"{RULES}add/", rule_data(name="整千", kind="round_amount", params={}))
    assert Rule.objects.get(name="整千").params == {"multiple": 1000, "require_no_note": True}

    composite = {
        "all": [{"kind": "new_account"}, {"kind": "address_keywords", "params": {"keywords": ["集运"]}}]
    }
    root_client.post(f"{RULES}add/", rule_data(name="新号集运", kind="composite", params=composite))
    assert Rule.objects.get(name="新号集运").params == {
        "all": [
            {"kind": "new_account", "params": {"days": 30}},
            {"kind": "address_keywords", "params": {"keywords": ["集运"]}},
        ]
    }


def test_a_weight_set_by_hand_is_recorded_and_becomes_the_base(root_client):
    rule = Rule.objects.create(
        name="整千金额", kind="round_amount", params={"multiple": 1000, "require_no_note": True},
        weight=60, base_weight=60,
    )  # fmt: skip
    form = rule_data(name=rule.name, kind=rule.kind, params=rule.params, weight="45")
    assert root_client.post(f"{RULES}{rule.pk}/change/", form).status_code == 302
    rule.refresh_from_db()
    assert (rule.weight, rule.base_weight) == (45, 45)
    change = RuleWeightChange.objects.get(rule=rule)
    assert (change.source, change.old_weight, change.new_weight) == ("admin", 60, 45)
    assert change.by.username == "root"

    # Saving again without touching the weight records nothing more.
    form = rule_data(name=rule.name, kind=rule.kind, params=rule.params, weight="45", description="说明")
    assert root_client.post(f"{RULES}{rule.pk}/change/", form).status_code == 302
    assert RuleWeightChange.objects.filter(rule=rule).count() == 1


def test_a_rules_type_cannot_change_once_it_has_one(root_client):
    rule = Rule.objects.create(
        name="整千金额", kind="round_amount", params={"multiple": 1000, "require_no_note": True}
    )
    form = rule_data(name=rule.name, kind="ip_velocity", params=rule.params, weight="30")
    assert root_client.post(f"{RULES}{rule.pk}/change/", form).status_code == 302
    rule.refresh_from_db()
    assert rule.kind == "round_amount" and rule.params == {"multiple": 1000, "require_no_note": True}


def test_the_change_form_explains_the_parameters_and_offers_a_dry_run(root_client):
    rule = Rule.objects.create(name="同设备", kind="device_velocity", params={"count": 3, "minutes": 5})
    page = root_client.get(f"{RULES}{rule.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="{RULES}{rule.pk}/dry-run/"' in html
    # Every type has its block; only the rule's own shows before the script runs.
    assert 'data-kind="device_velocity">' in html
    assert 'data-kind="ip_velocity" hidden>' in html
    assert "10080" in html  # the bound on minutes
    assert "&quot;count&quot;: 3" in html or '"count": 3' in html  # the example JSON

    add = root_client.get(f"{RULES}add/").content.decode()
    assert 'data-kind="composite">' in add and "&quot;all&quot;" in add


def test_the_rule_list_shows_recent_hits(root_client, jd):
    Rule.objects.update(is_active=False)
    clear_caches()  # a bulk update sends no signal: drop the cached rules
    rule = Rule.objects.create(
        name="转运地址", kind="address_keywords", params={"keywords": ["转运仓"]}, weight=10
    )
    order_ingest_batch(
        payloads=[order_payload(external_id="H1", address="广东省深圳市宝安区转运仓2号")],
        actor=system_actor("t"),
    )
    page = root_client.get(RULES, {"kind": "address_keywords"})
    assert page.status_code == 200
    shown = {r.pk: r.hits_recent for r in page.context["cl"].result_list}
    assert shown[rule.pk] == 1
    assert root_client.get(RULES, {"o": "-10"}).status_code == 200  # sorted by hits


def test_the_dry_run_action_takes_exactly_one_rule(root_client):
    a = Rule.objects.create(name="A", kind="new_account", params={"days": 30})
    b = Rule.objects.create(name="B", kind="new_account", params={"days": 7})
    one = root_client.post(RULES, {"action": "dry_run_selected", "_selected_action": [a.pk]})
    assert one.status_code == 302 and one["Location"] == f"{RULES}{a.pk}/dry-run/"
    two = root_client.post(RULES, {"action": "dry_run_selected", "_selected_action": [a.pk, b.pk]})
    assert two.status_code == 302 and two["Location"] == RULES  # back to the list, with a warning


def test_blacklist_admin_normalises_a_phone_and_records_who_added_it(root_client):
    response = root_client.post(
        "/admin/riskcontrol/blacklistentry/add/",
        {
            "kind": "phone",
            "value": " 135 1000 1000 ",
            "reason": "骗单",
            "expires_at_0": "",
            "expires_at_1": "",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = BlacklistEntry.objects.get()
    assert entry.value == "+8613510001000"
    assert entry.created_by.username == "root"


def test_blacklist_admin_refuses_a_bad_ip(root_client):
    response = root_client.post(
        "/admin/riskcontrol/blacklistentry/add/",
        {"kind": "ip", "value": "999.1.1.1", "reason": "x", "expires_at_0": "", "expires_at_1": ""},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["value"] and "999.1.1.1" in errors["value"][0]
    assert not BlacklistEntry.objects.exists()


def warehouse_data(**overrides) -> dict:
    data = {
        "code": "sz",
        "name": "深圳仓",
        "city": "深圳市",
        "latitude": "22.5435",
        "longitude": "114.0579",
        "provinces": '["广东", "广西壮族自治区"]',
        "is_default": "on",
        "is_active": "on",
    }
    return data | overrides


def test_warehouse_admin_refuses_a_latitude_of_200(root_client):
    response = root_client.post("/admin/orders/warehouse/add/", warehouse_data(latitude="200"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["latitude"] and "200" in errors["latitude"][0]
    assert not Warehouse.objects.exists()


@pytest.mark.parametrize(
    ("provinces", "bad"),
    [('["火星"]', "火星"), ('["深圳市"]', "深圳市"), ('"广东省"', "广东省")],
)
def test_warehouse_admin_refuses_what_is_not_a_list_of_provinces(root_client, provinces, bad):
    response = root_client.post("/admin/orders/warehouse/add/", warehouse_data(provinces=provinces))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["provinces"] and bad in errors["provinces"][0]
    assert not Warehouse.objects.exists()


def test_warehouse_admin_stores_province_names_as_orders_do(root_client):
    response = root_client.post("/admin/orders/warehouse/add/", warehouse_data())
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Warehouse.objects.get().provinces == ["广东省", "广西壮族自治区"]
    # A second default, or a province already served, is refused with who has it.
    again = root_client.post(
        "/admin/orders/warehouse/add/", warehouse_data(code="gz", name="广州仓", provinces='["广东省"]')
    )
    errors = again.context["adminform"].form.errors
    assert set(errors) == {"provinces", "is_default"} and "深圳仓" in errors["is_default"][0]
    assert Warehouse.objects.count() == 1
    assert root_client.get("/admin/orders/warehouse/").status_code == 200


def test_what_the_software_wrote_is_read_only(root_client, jd, make_user):
    Rule.objects.update(is_active=False)
    clear_caches()  # a bulk update sends no signal: drop the cached rules
    RiskPolicy.objects.update_or_create(channel=None, is_active=True, defaults={"name": "默认"})
    Rule.objects.create(name="临时仓", kind="address_keywords", params={"keywords": ["临时仓"]}, weight=100)
    order_ingest_batch(
        payloads=[order_payload(external_id="RO1", address="广东省深圳市福永临时仓")], actor=system_actor("t")
    )
    hit = RuleHit.objects.get()
    review = Review.objects.get()
    for url in (
        "/admin/riskcontrol/rulehit/",
        "/admin/riskcontrol/review/",
        "/admin/riskcontrol/ruleweightchange/",
    ):
        assert root_client.get(url).status_code == 200
        assert root_client.get(f"{url}add/").status_code == 403
    page = root_client.get(f"/admin/riskcontrol/review/{review.pk}/change/")
    assert page.status_code == 200 and b'name="state"' not in page.content
    assert (
        root_client.post(f"/admin/riskcontrol/review/{review.pk}/change/", {"state": "confirmed"}).status_code
        == 403
    )
    assert (
        root_client.post(f"/admin/riskcontrol/rulehit/{hit.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    review.refresh_from_db()
    assert review.state == "open" and RuleHit.objects.filter(pk=hit.pk).exists()


def restriction_data(**overrides) -> dict:
    data = {
        "province": "广东",
        "city": "深圳",
        "reason": "台风停运",
        "extra_days": "2",
        "active_from_0": "2026-11-20",
        "active_from_1": "08:00:00",
        "active_until_0": "",
        "active_until_1": "",
    }
    return data | overrides


def test_delivery_restrictions_name_places_as_orders_do(root_client):
    from riskcontrol.models import DeliveryRestriction

    url = "/admin/riskcontrol/deliveryrestriction/add/"
    response = root_client.post(url, restriction_data())
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert DeliveryRestriction.objects.values_list("province", "city").get() == ("广东省", "深圳市")

    for bad, field in (({"province": "火星"}, "province"), ({"city": "南山区"}, "city"),
                       ({"active_until_0": "2026-11-19", "active_until_1": "08:00:00"}, "active_until")):  # fmt: skip
        response = root_client.post(url, restriction_data(**bad))
        assert response.status_code == 200
        assert list(response.context["adminform"].form.errors) == [field]
    assert DeliveryRestriction.objects.count() == 1
