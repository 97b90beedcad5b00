"""Properties that must hold for every input, checked with hypothesis on generated ones: the
address parser, the spreadsheet importer, and risk-rule parameters (validation, evaluation and
the admin form). A failure hypothesis found is kept below as an explicit @example."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from decimal import Decimal
from pathlib import Path

import cpca
import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import translation
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orders.imports import import_job_create, import_job_run
from orders.models import ImportRowError, Order, OrderEvent
from orders.normalize import normalize_external_id, parse_address
from riskcontrol.engine import (
    History,
    ListKind,
    OrderSnap,
    RuleKind,
    RuleSpec,
    check,
    needs_of,
)
from riskcontrol.models import Rule
from riskcontrol.params import COMPOSITE_MOST, SPECS, Choice, Flag, Int, Num, Subset, clean_params
from riskcontrol.selectors import clear_caches
from riskcontrol.tests.test_admin import rule_data

# Deterministic and bounded; each test says how many examples it needs.
BOUNDED = settings(deadline=None, derandomize=True, database=None, print_blob=True)
# The database tests isolate each example in a savepoint of their own (see `savepoint`).
IN_DB = settings(BOUNDED, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class savepoint:
    """Run one example in a savepoint that is always rolled back, so no example sees another's
    rows (the `db` fixture's transaction spans all examples of a test)."""

    def __enter__(self):
        self._atomic = transaction.atomic()
        self._atomic.__enter__()

    def __exit__(self, exc_type, exc, tb):
        transaction.set_rollback(True)
        self._atomic.__exit__(exc_type, exc, tb)
        return False


# --- The address parser (orders.normalize.parse_address over cpca) ------------------------------

ADCODES: dict[str, str] = {}
with open(Path(cpca.__file__).parent / "resources" / "adcodes.csv", encoding="utf-8") as _table:
    for _row in csv.DictReader(_table):
        ADCODES[_row["adcode"][:6]] = _row["name"]
# A city level people do not write: "北京市市辖区", "湖北省省直辖县级行政区划仙桃市".
_UNWRITTEN_CITIES = {"市辖区", "省直辖县级行政区划", "自治区直辖县级行政区划"}
DISTRICTS = sorted(code for code in ADCODES if code[4:] != "00")
PLACE_NAMES = sorted(set(ADCODES.values()))


def _name(code: str) -> str | None:
    return ADCODES.get(code.ljust(6, "0"))


# Text people type into an address box, and worse: place names in any order, noise, emoji,
# control characters, full-width letters, other scripts.
_address_pieces = st.one_of(
    st.text(max_size=12),
    st.sampled_from(PLACE_NAMES),
    st.sampled_from(
        ["省", "市", "区", "县", "路", "号", "栋", "🏠", "\x00", "\u200b", "\n", "ＡＢ１", "ул.", "שלום"]
    ),
)
address_texts = st.lists(_address_pieces, max_size=8).map("".join)


@settings(BOUNDED, max_examples=300)
@given(address_texts)
@example("")
@example("　\t\r\n")
@example("广东省深圳市南山区" * 20_000)  # ~180,000 characters
@example("\x00\x01\x7f\u202e北京\ud7ff")
@example("上海市浦东新区🏠世纪大道1号")
@example("吉林省吉林市")  # a city named as its province
def test_the_address_parser_never_raises_and_what_it_returns_agrees_with_its_adcode(text):
    parsed = parse_address(text)

    if not parsed.adcode:
        assert (parsed.province, parsed.city, parsed.district) == ("", "", "")
    else:
        assert parsed.adcode.isdigit() and len(parsed.adcode) == 6
        assert parsed.province == _name(parsed.adcode[:2])
        city = _name(parsed.adcode[:4]) if parsed.adcode[2:4] != "00" else None
        if parsed.city and city not in _UNWRITTEN_CITIES:
            assert parsed.city == city
        if parsed.city and city == "市辖区":  # Beijing, Shanghai, Tianjin, Chongqing
            assert parsed.city == parsed.province
        if parsed.district:
            assert parsed.district == _name(parsed.adcode)
    assert parsed.ambiguous == (not parsed.city)
    assert (parsed.latitude is None) == (parsed.longitude is None)
    if parsed.latitude is not None:
        assert -90 <= parsed.latitude <= 90 and -180 <= parsed.longitude <= 180


@settings(BOUNDED, max_examples=300)
@given(address_texts)
def test_the_address_parser_reads_its_own_answer_back_as_the_same_place(text):
    parsed = parse_address(text)
    again = parse_address(parsed.province + parsed.city + parsed.district)

    assert (again.province, again.city, again.district, again.adcode) == (
        parsed.province,
        parsed.city,
        parsed.district,
        parsed.adcode,
    )
    assert parse_address(unicodedata.normalize("NFKC", text)) == parsed


@settings(BOUNDED, max_examples=300)
@given(district=st.sampled_from(DISTRICTS), street=st.text(max_size=30), spaced=st.booleans())
@example(district="110105", street="建国路88号", spaced=False)  # 北京市朝阳区, not 长春市朝阳区
@example(district="429004", street="", spaced=True)  # 湖北省仙桃市: no written city level
def test_a_well_formed_address_from_the_adcode_table_parses_back_to_its_district(district, street, spaced):
    city = _name(district[:4])
    parts = [_name(district[:2]), "" if city in _UNWRITTEN_CITIES else city, _name(district), street]
    text = (" " if spaced else "").join(parts)

    parsed = parse_address(text)

    assert parsed.adcode == district, (text, parsed)
    assert parsed.district == ADCODES[district]
    assert parsed.latitude is not None and not parsed.ambiguous


# --- The spreadsheet importer (orders.imports) ---------------------------------------------------

_formula_like = st.sampled_from(
    ["=1+1", '=HYPERLINK("http://x.example","点我")', "@SUM(A1)", "+86 135", "-2", "\t=cmd"]
)
_awkward = st.sampled_from(
    ['say "hi"', "a,b", "two\nlines", "cr\r\nlf", "🏠", "Ｆｕｌｌ", "ñ", "\u200b", "  "]
)
free_text = st.one_of(st.text(max_size=20), _formula_like, _awkward)
# Each column: what a good row holds, and what makes a row bad. Ids repeat and have look-alikes.
COLUMNS = {
    "订单号": (
        st.sampled_from(["A-1", "A-2", "A-3", "Ａ-１", " A-2\u200b"])
        | st.from_regex(r"[A-Z]{2}-[0-9]{1,5}", fullmatch=True),
        st.sampled_from(["", "\x01A", "B" * 129, "\u200b"]),
    ),
    "客户姓名": (free_text, st.sampled_from(["王\x00小明", "x" * 101])),
    "手机": (st.sampled_from(["13510001000", "+86 135 1000 1000", "12345", ""]), st.nothing()),
    "收货地址": (
        st.sampled_from(["广东省深圳市南山区科技园8栋", "学校门口", ""]) | free_text,
        st.just("x" * 501),
    ),
    "商品": (free_text, st.nothing()),
    "数量": (st.sampled_from(["1", "2", "100", ""]), st.sampled_from(["0", "-1", "x", "1.5"])),
    "实付金额": (
        st.decimals(min_value=0, max_value=10**9, places=2).map(str) | st.sampled_from(["¥1,299.00", "0"]),
        st.sampled_from(["-5", "12.345", "", "abc", "NaN", "1e3", "=1+1", "٣٠"]),
    ),
    "备注": (free_text, st.just("\x00")),
    "会员": (st.sampled_from(["是", "否", "vip", ""]), st.just("maybe")),
    "加急": (st.sampled_from(["加急", "普通", ""]), st.just("soon")),
    # Two versions of one order: the newer updates it, the older is ignored and counted.
    "更新时间": (
        st.sampled_from(["2026-11-20 10:00:00", "2026-11-21 09:30:00", "2026/11/22 08:00", ""]),
        st.sampled_from(["2026-13-01 00:00:00", "yesterday"]),
    ),
    # A column the importer does not know: kept only in the error report.
    "仓库": (free_text | st.just("\x00"), st.nothing()),
}
HEADER = list(COLUMNS)
_good_row = st.tuples(*(good for good, _bad in COLUMNS.values())).map(list)
_bad_cell = st.sampled_from(
    [i for i, (_good, bad) in enumerate(COLUMNS.values()) if not bad.is_empty]
).flatmap(lambda i: st.tuples(st.just(i), list(COLUMNS.values())[i][1]))


def _spoil(row: list[str], bad: tuple[int, str] | None) -> list[str]:
    if bad is not None:
        row[bad[0]] = bad[1]
    return row


# Good rows, rows with one bad cell, and now and then a blank row.
_row = st.builds(_spoil, _good_row, st.none() | _bad_cell)
rows = st.lists(
    st.one_of(_row, _row, _row, st.just([""] * len(COLUMNS))),
    min_size=1,
    max_size=12,
)


def _encode(records: list[list[str]], encoding: str) -> bytes:
    text = io.StringIO(newline="")
    csv.writer(text).writerows([HEADER, *records])
    return text.getvalue().encode(encoding, errors="replace" if encoding == "gbk" else "strict")


def _import(channel, data: bytes):
    job = import_job_create(channel=channel, original_name="orders.csv", source="command")
    with translation.override("en"):
        return import_job_run(job_id=job.pk, binary=io.BytesIO(data))


def _orders(*, but: str = "") -> list[dict]:
    return _without(list(Order.objects.order_by("pk").values()), but)


def _without(orders: list[dict], field: str) -> list[dict]:
    return [{k: v for k, v in order.items() if k != field} for order in orders]


@settings(IN_DB, max_examples=60)
@given(records=rows, encoding=st.sampled_from(["utf-8", "utf-8-sig", "gbk"]))
# A bad quantity was reported as "items.0.qty" and "items.0.price", not on the sheet's columns.
@example(records=[["A-1", "", "", "", "羽绒服", "0", "10", "", "", "", "", ""]], encoding="utf-8-sig")
# A NUL in a cell stopped the whole import: the report's row could not be stored.
@example(records=[["A-1", "王\x00小明", "", "", "", "", "10", "", "", "", "", "\x00"]], encoding="utf-8")
def test_every_imported_row_is_stored_or_reported_and_importing_it_again_changes_nothing(
    jd, records, encoding
):
    data = _encode(records, encoding)
    # The rows as any CSV reader reads the file back (GBK has no "🏠": it became "?").
    in_file = list(csv.reader(io.StringIO(data.decode("gb18030" if encoding == "gbk" else "utf-8-sig"))))[1:]
    blank = {n for n, cells in enumerate(in_file, start=2) if not any(c.strip() for c in cells)}
    with savepoint():
        # when the file is imported
        job = _import(jd, data)

        # then every data row was read and ended as exactly one of stored or rejected
        assert job.status == "done", job.message
        reported = {e.row_number: e for e in ImportRowError.objects.filter(job=job)}
        stored_rows = job.created_count + job.updated_count + job.ignored_count
        assert job.processed_rows == len(in_file) == len(records)
        assert stored_rows + job.rejected_count + len(blank) == len(records)
        assert len(reported) == job.rejected_count  # one report line per rejected row, no duplicates
        assert set(reported).isdisjoint(blank) and all(2 <= n <= len(records) + 1 for n in reported)
        # each says why, on the sheet's own columns ("数量", not "items.0.qty")
        assert all(error.errors and set(error.errors) <= {*HEADER, "row"} for error in reported.values())
        # and nothing half-written: an order exists exactly for the ids of rows not rejected
        kept = {
            normalize_external_id(cells[0])
            for n, cells in enumerate(in_file, start=2)
            if n not in reported and n not in blank
        }
        assert set(Order.objects.filter(channel=jd).values_list("external_id", flat=True)) == kept
        before, events = _orders(), set(OrderEvent.objects.values_list("pk", flat=True))

        # when the same file is imported again
        again = _import(jd, data)

        # then it stores nothing new and reports the same rows; an older version of an order in
        # the file is only counted again on it, as every older delivery is
        assert (again.created_count, again.updated_count) == (0, 0)
        assert (again.ignored_count, again.rejected_count) == (stored_rows, job.rejected_count)
        assert _orders(but="stale_deliveries") == _without(before, "stale_deliveries")
        new_events = OrderEvent.objects.exclude(pk__in=events).values_list("kind", flat=True)
        assert set(new_events) <= {OrderEvent.Kind.IGNORED_STALE}


# --- Risk-rule parameters (riskcontrol.params, the engine, the admin form) ----------------------

_words = st.lists(
    st.one_of(st.text(max_size=45), st.sampled_from(["临时仓", " ", "\x00", "\ud800"])), max_size=5
)
_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10), _words
)


def _value_for(rule) -> st.SearchStrategy:
    """Values around what `rule` takes: inside and outside its bounds, and of other types."""
    if isinstance(rule, Int):
        typed = st.integers(rule.low - 2, rule.high + 2)
    elif isinstance(rule, Num):
        typed = st.floats(rule.low - 1, rule.high + 1) | st.integers(int(rule.low) - 1, int(rule.high) + 1)
    elif isinstance(rule, Flag):
        typed = st.booleans()
    elif isinstance(rule, Choice):
        typed = st.sampled_from([*rule.options, "moon"])
    elif isinstance(rule, Subset):
        typed = st.lists(st.sampled_from([*rule.options, "moon"]), max_size=4)
    else:
        typed = _words
    return st.one_of(typed, _json_leaf)


def _params_for(kind: RuleKind) -> st.SearchStrategy:
    if kind == RuleKind.COMPOSITE:
        condition = st.sampled_from(list(RuleKind)).flatmap(
            lambda inner: (
                st.fixed_dictionaries({"kind": st.just(inner.value)}, optional={"params": _params_for(inner)})
                if inner != RuleKind.COMPOSITE
                else st.just({"kind": inner.value})
            )
        )
        return st.fixed_dictionaries({}, optional={"all": st.lists(condition, max_size=COMPOSITE_MOST + 1)})
    spec = SPECS[kind]
    named = st.fixed_dictionaries({}, optional={name: _value_for(rule) for name, rule in spec.items()})
    return st.one_of(named, named.map(lambda p: {**p, "speed": 9}), _json_leaf)


rule_params = st.sampled_from(list(RuleKind)).flatmap(
    lambda kind: st.tuples(st.just(kind), _params_for(kind))
)

_coords = st.none() | st.tuples(st.floats(-90, 90), st.floats(-180, 180))
_money = st.decimals(min_value=0, max_value=10**10, places=2)
snapshots = st.builds(
    OrderSnap,
    key=st.just(1),
    at=st.floats(0, 4e9),
    amount=_money,
    note=st.text(max_size=10),
    address=st.text(max_size=20) | st.just("广东省深圳市临时仓"),
    coupon=st.sampled_from(["", "NEW10"]),
    ip=st.sampled_from(["", "1.2.3.4"]),
    device=st.sampled_from(["", "dev-1"]),
    card=st.sampled_from(["", "c" * 64]),
    phone_coords=_coords,
    delivery_coords=_coords,
    warehouse_coords=_coords,
    customer_prior_orders=st.integers(0, 10_000),
    customer_avg_amount=st.none() | _money,
    account_age_days=st.none() | st.floats(0, 1e5),
    channel_avg_amount=st.none() | _money,
    blacklisted=st.lists(
        st.tuples(st.sampled_from([k.value for k in ListKind]), st.just("v"), st.just("r")), max_size=2
    ).map(tuple),
)


_NUL_WORD = (RuleKind.ADDRESS_KEYWORDS, {"keywords": ["临时仓", "\x00"]})
_SURROGATE_WORD = (RuleKind.ADDRESS_KEYWORDS, {"keywords": ["\ud800"]})
_DEFAULT_KINDS = (RuleKind.BLACKLIST, {})  # the default list came back unsorted: unstable
_SURROGATE_NAME = (RuleKind.IP_VELOCITY, {"\ud800": 1})


@settings(BOUNDED, max_examples=500)
@given(rule=rule_params, order=snapshots, earlier=st.lists(snapshots, max_size=3))
@example(rule=_NUL_WORD, order=OrderSnap(key=1, at=0, amount=Decimal("1")), earlier=[])
@example(rule=_SURROGATE_WORD, order=OrderSnap(key=1, at=0, amount=Decimal("1")), earlier=[])
@example(rule=_DEFAULT_KINDS, order=OrderSnap(key=1, at=0, amount=Decimal("1")), earlier=[])
def test_rule_parameters_are_refused_with_a_reason_or_accepted_and_then_evaluate_on_any_order(
    rule, order, earlier
):
    kind, params = rule
    try:
        cleaned = clean_params(kind.value, params)
    except ValidationError as refusal:
        assert refusal.messages and all(m.strip() for m in refusal.messages)
        return

    # Accepted: stable, storable (PostgreSQL's jsonb takes neither NUL nor a lone surrogate),
    # and the engine can run it on any order.
    assert clean_params(kind.value, cleaned) == cleaned
    text = json.dumps(cleaned, allow_nan=False, ensure_ascii=False)
    assert "\x00" not in text and text.encode("utf-8")
    history = History()
    for seq, snap in enumerate(earlier):
        history.add_order(snap, seq)
    spec = RuleSpec(id=1, kind=kind, params=cleaned, weight=30)
    needs_of([spec])
    facts = check(kind, cleaned, order, history, len(earlier))
    assert facts is None or isinstance(facts, dict)


RULES_ADMIN = "/admin/riskcontrol/rule/"


@pytest.fixture
def root_client(client, make_user):
    clear_caches()
    client.force_login(make_user("root", "admin", is_superuser=True, is_staff=True))
    yield client
    clear_caches()


def _rule_form(kind: str, params_text: str) -> dict:
    return rule_data(name="生成的规则", kind=kind, params=params_text)


@settings(IN_DB, max_examples=60)
@given(rule=rule_params, broken=st.sampled_from(["", "{", "[1,", "NaN", '{"count": Infinity}', None]))
@example(rule=_NUL_WORD, broken=None)
@example(rule=_SURROGATE_WORD, broken=None)
@example(rule=_SURROGATE_NAME, broken=None)
def test_the_rule_admin_saves_accepted_parameters_and_refuses_the_rest_never_a_500(root_client, rule, broken):
    kind, params = rule
    # As typed into the textarea: a lone surrogate arrives as its JSON escape.
    text = broken if broken is not None else json.dumps(params)
    with savepoint():
        response = root_client.post(f"{RULES_ADMIN}add/", _rule_form(kind.value, text))

        stored = Rule.objects.filter(name="生成的规则").first()
        if response.status_code == 302:
            assert stored is not None
            assert stored.params == clean_params(kind.value, json.loads(text) if text else None)
        else:
            assert response.status_code == 200 and stored is None
            assert "params" in response.context["adminform"].form.errors
